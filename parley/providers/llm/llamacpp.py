"""llama.cpp in-process (llama-cpp-python): an instruct model through its own chat template (the default,
Qwen2.5-Coder 0.5B Instruct), or a small *base* model such as Gemma 3 270M through the few-shot transcript
convention of ``prompting``.

All model work runs on one SerialWorker thread: llama.cpp contexts are not thread-safe, and one reply
is one job, so concurrent replies queue instead of thrashing the single-sequence KV cache.
"""

from __future__ import annotations

import asyncio
import codecs
import itertools
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from parley.providers.foreground import FOREGROUND
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolSpec, Usage
from parley.providers.llm.chat_template import (
    TOOL_CLOSE,
    TOOL_OPEN,
    ChatPrompt,
    ChatReplyParser,
    ChatTemplate,
    clean_content,
    first_json_value,
    opens_with_markup,
)
from parley.providers.llm.prompting import (
    CALL,
    STOP_STRINGS,
    Prompt,
    ReplyCleaner,
    build_prompt,
    parse_tool_line,
    stable_prefix,
)
from parley.providers.serial_worker import BACKGROUND, URGENT, SerialWorker

_DONE = object()
READ_AHEAD_TOKENS = 64
"""The most a read-ahead evaluates (about a second on 2 cores): a caller's turn and the template around it."""
READ_AHEAD_BATCH = 8
"""Tokens a read-ahead evaluates at a time: a reply waits at most one batch for it (evaluating 8 tokens
costs about what 16 do, one at a time would cost three times as much)."""
log = structlog.get_logger("parley.providers.llm.llamacpp")


@dataclass(frozen=True, slots=True)
class GenerationStats:
    """Figures for the last reply, so latency is measured rather than guessed."""

    prompt_tokens: int
    cached_tokens: int
    """Prompt tokens whose KV entries were reused from the previous call (not evaluated again)."""
    completion_tokens: int
    prompt_eval_seconds: float
    """From the start of work on the worker thread to the first sampled token."""
    generation_seconds: float
    """From the first sampled token to the end of the reply."""
    queued_seconds: float
    finish_reason: str

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.generation_seconds if self.generation_seconds > 0 else 0.0


class LlamaCppModel:
    """A LanguageModel over a GGUF file: with ``chat=True`` through the file's chat template and native
    tool calls, else as a base model prompted with a few-shot transcript.

    Loading happens in the constructor (about half a second for these small models); from async code use
    ``await LlamaCppModel.open(path)`` to keep the event loop free.
    """

    def __init__(
        self,
        model_path: str | Path,
        n_ctx: int = 2048,
        n_threads: int = 2,
        n_batch: int = 256,
        seed: int = 0,
        *,
        chat: bool = False,
        worker: SerialWorker | None = None,
    ) -> None:
        from llama_cpp import Llama  # imported here so the rest of Parley loads without the extension

        _quiet_native_logs()
        started = time.perf_counter()
        self._llm: Any = Llama(
            model_path=str(model_path),
            n_ctx=n_ctx,
            n_threads=n_threads,
            n_threads_batch=n_threads,
            n_batch=n_batch,
            seed=seed,
            verbose=False,
        )
        self.load_seconds = time.perf_counter() - started
        self.name = f"llama.cpp/{Path(model_path).stem}"
        self.n_ctx = n_ctx
        self.n_batch = n_batch
        self.last_stats: GenerationStats | None = None
        self._worker = worker or SerialWorker("parley-llamacpp")
        self._call_ids = itertools.count(1)
        self._chat: ChatTemplate | None = None
        if chat:
            metadata: dict[str, str] = self._llm.metadata
            self._chat = ChatTemplate(
                metadata.get("tokenizer.chat_template", ""),
                bos_token=self._token_text(self._llm.token_bos()),
                eos_token=self._token_text(self._llm.token_eos()),
            )
        self._call_openings: tuple[list[int], list[int]] | None = None
        """The tokens ``_without_calls`` rules out: anywhere, and as a reply's first token."""
        self.takes_allowed_tools = self._chat is not None
        """``stream`` takes ``allowed_tools`` (``parley.providers.llm.base.takes_allowed_tools``)."""

    @classmethod
    async def open(cls, model_path: str | Path, **options: Any) -> LlamaCppModel:
        return await asyncio.to_thread(cls, model_path, **options)

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False))

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        """Evaluate the stable prompt prefix once, so the first real turn only evaluates its own lines.

        With an agent's system messages (and tools) the agent's part of the prefix is evaluated too.
        """
        if self._chat is not None:
            prefix = self._chat.prefix(messages or [], tools)
            if not prefix:
                return
        else:
            prefix = build_prompt(messages, tools).prefix if messages else stable_prefix()
        await self._worker.run(partial(self._prefill, self._tokenize(prefix), lambda: False), BACKGROUND)

    async def read_ahead(
        self, messages: list[ChatMessage], tools: list[ToolSpec] | None, opening: str = ""
    ) -> None:
        """Evaluate the next prompt up to the caller's words heard so far (``ReadsAhead``), as a job behind
        every reply. Only while the cache holds this conversation: the new part is at most
        ``READ_AHEAD_TOKENS``, else (another call's prompt is in the cache) reading it would only hold up
        the worker."""
        if self._chat is None:
            return
        start = self._chat.opening(messages, tools)
        if not start:
            return
        text = start + clean_content(opening)
        await self._worker.run(partial(self._read_ahead, text), BACKGROUND)

    def _read_ahead(self, text: str) -> None:
        tokens = self._tokenize(text)
        if len(tokens) < self.n_ctx and len(tokens) - self._cached(tokens) <= READ_AHEAD_TOKENS:
            # It gives way to a reply queued meanwhile, at its next batch.
            self._prefill(tokens, lambda: self._worker.urgent_waiting, READ_AHEAD_BATCH)

    def close(self) -> None:
        """Stop the worker thread once queued replies are done; the weights go with this object."""
        self._worker.close()

    async def aclose(self) -> None:
        """``close`` and wait until the worker thread has finished what it was doing."""
        await self._worker.aclose()

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        tool_choice: str | None = None,
        strict: bool = False,
        allowed_tools: Collection[str] | None = None,
    ) -> AsyncIterator[LLMChunk]:
        """``allowed_tools`` (chat models, ``takes_allowed_tools``): the tools this reply may call; the
        others stay in the prompt, so the KV cache of a round before still holds (see ``_Request``)."""
        prompt = self._chat.prompt(messages, tools) if self._chat else build_prompt(messages, tools)
        prompted = {tool.name for tool in tools or ()}
        allowed = set(allowed_tools) if allowed_tools is not None and self._chat is not None else prompted
        offered = prompted & allowed
        # A required call is the reply's opening, written for the model: it only fills in the arguments.
        forced = ""
        if tool_choice is not None and tool_choice in offered:
            named = json.dumps(tool_choice)
            chat_opening = f'{TOOL_OPEN}\n{{"name": {named}, "arguments": '
            forced = chat_opening if self._chat else f"{CALL} {tool_choice} "
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        cancel = threading.Event()

        def emit(item: object) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                cancel.set()

        schema = next((t.parameters for t in tools or () if t.name == tool_choice), None) if strict else None
        created = time.perf_counter()
        request = _Request(
            prompt, offered, max_tokens, temperature, cancel, emit, created, forced, schema, prompted
        )
        job = self._worker.submit(partial(self._run, request), URGENT)
        try:
            while (item := await queue.get()) is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, LLMChunk)
                yield item
        finally:
            # Reached on normal end, on an error, on aclose() and on cancellation of the consumer;
            # the worker checks the flag before every token, and skips a reply that has not started.
            cancel.set()
            job.cancel()

    # --- worker thread -------------------------------------------------------------------------

    def _tokenize(self, text: str) -> list[int]:
        # A chat prompt's markers are special tokens; message text had its markers removed when rendered.
        tokens: list[int] = self._llm.tokenize(
            text.encode("utf-8"), add_bos=True, special=self._chat is not None
        )
        return tokens

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return bytes(self._llm.detokenize([token], special=True)).decode("utf-8", errors="replace")

    def _prefill(self, tokens: list[int], stop: Callable[[], bool], batch: int | None = None) -> int:
        """Evaluate what the KV cache does not hold yet, batch by batch (``n_batch`` tokens, or ``batch``)
        until ``stop()``; returns the reused count."""
        llm = self._llm
        cached = self._cached(tokens)
        # Always evaluate at least the last token so the logits belong to this prompt.
        cached = min(cached, len(tokens) - 1)
        llm.n_tokens = cached
        step = batch or self.n_batch
        for start in range(cached, len(tokens), step):
            if batch is not None:  # a read-ahead: nobody waits for it
                FOREGROUND.give_way()
            if stop():
                break
            llm.eval(tokens[start : start + step])
        return cached

    def _cached(self, tokens: list[int]) -> int:
        """How many of ``tokens`` the KV cache already holds (their common start)."""
        llm = self._llm
        cached = 0
        for old, new in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens, strict=False):
            if old != new:
                break
            cached += 1
        return cached

    def _fit(self, prompt: Prompt | ChatPrompt, max_tokens: int, opening: str = "") -> list[int]:
        """Drop the oldest history lines until prompt (with the reply's ``opening``) and reply fit the
        context window."""
        for skip in range(len(prompt.lines) + 1):
            tokens = self._tokenize(prompt.text(skip) + opening)
            if len(tokens) + max_tokens <= self.n_ctx:
                return tokens
        raise ValueError(
            f"system prompt and tools take {len(tokens)} tokens; n_ctx={self.n_ctx} leaves no room"
        )

    def _run(self, request: _Request) -> None:
        try:
            if not request.cancel.is_set():
                self._generate(request)
        except Exception as error:  # surfaced to the consumer, raised there
            request.emit(error)
        finally:
            request.emit(_DONE)

    def _generate(self, request: _Request) -> None:
        begun = time.perf_counter()
        tokens = self._fit(request.prompt, request.max_tokens, request.forced)
        cached = self._prefill(tokens, request.cancel.is_set)
        reply: _ReplyState | _ChatReplyState = (
            _ChatReplyState(request, self._llm, self._call_ids)
            if self._chat
            else _ReplyState(request, self._llm)
        )
        no_calls = request.restricted and not request.offered
        produced, finish, first_at = self._sample(request, tokens, reply, no_calls=no_calls)
        if isinstance(reply, _ChatReplyState) and reply.refused and not reply.spoke and finish != "cancelled":
            log.info("a call not allowed now was begun; sampling the reply again without calls")
            reply = _ChatReplyState(request, self._llm, self._call_ids)
            more, finish, _ = self._sample(request, tokens, reply, no_calls=True)
            produced += more
        schema = request.forced_schema
        if (
            finish != "cancelled"
            and isinstance(reply, _ChatReplyState)
            and not reply.forced_call_fits(schema)
        ):
            # The 0.5B model sometimes writes a required call's arguments as a bare number ("arguments":
            # 3); written again under its JSON schema, they come out as an object, with the caller's words.
            grammar = _arguments_grammar(schema)
            if grammar is not None:
                log.info("required tool call malformed; sampling it again under its schema")
                reply = _ChatReplyState(request, self._llm, self._call_ids, constrained=True)
                more, finish, _ = self._sample(request, tokens, reply, grammar)
                produced += more
        if finish != "cancelled" and reply.finish(next(self._call_ids)):  # the chat parser numbers its own
            finish = "tool_calls"
        done = time.perf_counter()
        self.last_stats = GenerationStats(
            prompt_tokens=len(tokens),
            cached_tokens=cached,
            completion_tokens=produced,
            prompt_eval_seconds=first_at - begun,
            generation_seconds=done - first_at,
            queued_seconds=begun - request.created,
            finish_reason=finish,
        )
        request.emit(LLMChunk(usage=Usage(len(tokens), produced), finish_reason=finish))

    def _sample(
        self,
        request: _Request,
        tokens: list[int],
        reply: _ReplyState | _ChatReplyState,
        grammar: Any = None,
        *,
        no_calls: bool = False,
    ) -> tuple[int, str, float]:
        """Sample the reply into ``reply``: (tokens produced, finish reason, when the first came).
        ``no_calls``: no tool call can begin (``_without_calls``)."""
        first_at = time.perf_counter()
        produced, finish = 0, "cancelled" if request.cancel.is_set() else "stop"
        if finish == "cancelled":
            return produced, finish, first_at
        generator = self._llm.generate(
            tokens,
            temp=request.temperature,
            top_k=40,
            top_p=0.95,
            repeat_penalty=1.0,
            grammar=grammar,
            logits_processor=self._without_calls(len(tokens)) if no_calls else None,
        )
        try:
            for token in generator:
                if produced == 0:
                    first_at = time.perf_counter()
                if request.cancel.is_set():
                    finish = "cancelled"
                    break
                if self._is_end(token):
                    break
                produced += 1
                if reply.add(token):
                    break
                if produced >= request.max_tokens:
                    finish = "length"
                    break
                FOREGROUND.give_way()  # the words before this one are being voiced: that comes first
        finally:
            generator.close()
        return produced, finish, first_at

    def _without_calls(self, prompt_length: int) -> Any:
        """A logits processor that keeps a reply from becoming a tool call: never the token that opens
        one, and no first token that starts JSON or markup (the model writes the call bare instead)."""
        from llama_cpp import LogitsProcessorList

        if self._call_openings is None:  # the vocabulary does not change: looked up once
            anywhere = self._single_tokens([TOOL_OPEN])
            self._call_openings = (anywhere, anywhere + self._single_tokens(_CALL_OPENINGS))
        anywhere, first = self._call_openings

        def rule_out(input_ids: Any, scores: Any) -> Any:
            scores[first if len(input_ids) <= prompt_length else anywhere] = -float("inf")
            return scores

        return LogitsProcessorList([rule_out])

    def _single_tokens(self, texts: list[str]) -> list[int]:
        """The tokens of those ``texts`` the vocabulary holds as one token."""
        found = [self._llm.tokenize(text.encode(), add_bos=False, special=True) for text in texts]
        return [tokens[0] for tokens in found if len(tokens) == 1]

    def _is_end(self, token: int) -> bool:
        from llama_cpp import llama_vocab_is_eog

        return bool(llama_vocab_is_eog(self._llm._model.vocab, token))


class _ReplyState:
    """Turns sampled tokens into speakable text, or into one tool call when the reply is a CALL line."""

    def __init__(self, request: _Request, llm: Any) -> None:
        self._request = request
        self._llm = llm
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._cleaner = ReplyCleaner()
        self._mode = "call" if request.forced else "undecided" if request.offered else "text"
        self._raw = request.forced

    def add(self, token: int) -> bool:
        """Take one token; True when the reply is complete."""
        piece = self._decoder.decode(self._llm.detokenize([token]))
        self._raw += piece
        if self._mode == "undecided":
            head = self._raw.lstrip()
            if head.startswith(CALL + " "):
                self._mode = "call"
            elif not (CALL + " ").startswith(head):
                self._mode, piece = "text", self._raw
        if self._mode == "call":
            return any(stop in self._raw.lstrip() for stop in STOP_STRINGS)
        if self._mode == "text":
            text, stopped = self._cleaner.feed(piece)
            if text:
                self._request.emit(LLMChunk(text=text))
            return stopped
        return False

    def finish(self, serial: int) -> bool:
        """Emit what is still held back; True when that was a tool call."""
        if self._mode == "call":
            line = self._raw.lstrip().split("\n", 1)[0]
            call = parse_tool_line(line, f"call_{serial}_{uuid.uuid4().hex[:8]}", self._request.offered)
            if call is not None:
                self._request.emit(LLMChunk(tool_call=call))
            return call is not None
        head = self._cleaner.feed(self._raw)[0] if self._mode == "undecided" else ""
        tail = head + self._cleaner.flush()
        if tail:
            self._request.emit(LLMChunk(text=tail))
        return False


class _ChatReplyState:
    """Tokens of a chat model's reply, through ``ChatReplyParser`` (text, or native tool calls).

    A required call (``request.forced``) is one call: the reply ends as soon as it is complete, not at
    the token limit after more calls a small model strings on. ``constrained``: its arguments are sampled
    under their schema's grammar, which ends with the arguments object; the call is closed here."""

    def __init__(
        self, request: _Request, llm: Any, serials: itertools.count[int], *, constrained: bool = False
    ) -> None:
        self._llm = llm
        self._forced = request.forced
        self._constrained = constrained
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._emit = request.emit
        self._allowed = request.offered if request.restricted else None
        self.spoke = False
        """Some of the reply was already given out as text."""
        self.refused = False
        """It began a call to a tool it may not call now (``_Request.restricted``) and was stopped."""
        self._parser = ChatReplyParser(
            request.offered,
            self._give,
            lambda: f"call_{next(serials)}_{uuid.uuid4().hex[:8]}",
            single_call=bool(request.forced),
            in_prompt=request.prompted,
        )
        self._parser.add(request.forced)

    def add(self, token: int) -> bool:
        done = self._parser.add(self._decoder.decode(self._llm.detokenize([token])))
        if self._allowed is not None and not done and _calls_unallowed(self._parser.text, self._allowed):
            self.refused = True
            return True
        return done

    def _give(self, chunk: LLMChunk) -> None:
        self.spoke = self.spoke or bool(chunk.text)
        self._emit(chunk)

    def forced_call_fits(self, schema: dict[str, Any] | None) -> bool:
        """Whether a required call's arguments are an object with ``schema``'s required properties
        (not a number, cut off, or missing one). True without a schema: nothing to check against."""
        if not self._forced or schema is None:
            return True
        arguments = first_json_value(self._parser.text[len(self._forced) :])
        required = schema.get("required", [])
        return isinstance(arguments, dict) and all(name in arguments for name in required)

    def finish(self, _serial: int) -> bool:
        if self._constrained:
            self._parser.add("}\n" + TOOL_CLOSE)
        return self._parser.finish()


_CALL_OPENINGS = ["{", '{"', " {", ' {"', "{\n", "[", "[{", " [", "`", "```", "```json", " ```", "<"]
"""How a reply that is a call written bare begins: never the first token of one that may not call."""
_CALLED_NAME = re.compile(r'"name"\s*:\s*"([^"]*)("?)')


def _calls_unallowed(text: str, allowed: set[str]) -> bool:
    """Whether ``text`` has begun a tool call (after ``<tool_call>``, or written bare from its start)
    whose name, as far as it is written, is none of ``allowed``."""
    at = text.find(TOOL_OPEN)
    if at < 0:
        if not opens_with_markup(text):
            return False
        at = 0
    if not allowed:
        return True
    named = _CALLED_NAME.search(text, at)
    if named is None:
        return False
    name, closed = named.group(1), bool(named.group(2))
    return name not in allowed if closed else not any(tool.startswith(name) for tool in allowed)


def _arguments_grammar(schema: dict[str, Any] | None) -> Any:
    """llama.cpp's grammar for a required call's arguments, from its JSON schema (None when the schema
    uses what llama-cpp-python's converter does not support: the call then stays as written)."""
    from llama_cpp.llama_grammar import LlamaGrammar

    try:
        return LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    except Exception as exc:  # the converter raises plain Exceptions for schema features it lacks
        log.warning("no grammar for a tool's arguments", error=repr(exc))
        return None


@dataclass(slots=True)
class _Request:
    prompt: Prompt | ChatPrompt
    offered: set[str]
    max_tokens: int
    temperature: float
    cancel: threading.Event
    emit: Callable[[object], None]
    created: float
    forced: str = ""
    """The reply's opening, already written: a required tool call up to its arguments."""
    forced_schema: dict[str, Any] | None = None
    """The required tool's parameters (JSON schema), when its arguments must follow it (``strict``)."""
    prompted: set[str] | None = None
    """The tools in the prompt, of which only ``offered`` may be called now. The others are not taken
    out of the prompt: the tools come first in a chat prompt, and a change there made the model read
    everything after it again, about 7 s on 2 cores after a tool call. A call to one of them is stopped
    as soon as its name shows, and the reply sampled again with no call allowed."""

    @property
    def restricted(self) -> bool:
        return self.prompted is not None and not self.prompted <= self.offered


# ggml's log levels (ggml.h). llama-cpp-python's own callback still uses an older numbering, so it
# prints llama.cpp's warnings (e.g. "using full-size SWA cache") as if they were errors.
_GGML_ERROR = 4
_GGML_CONT = 5
_native_log_lock = threading.Lock()
_native_log_callback: Any = None


class _NativeLog:
    """llama.cpp's log lines, reassembled (a line can arrive in pieces), go to structlog: debug, and
    errors as warnings. Called from whichever thread llama.cpp runs on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending = ""
        self._level = 0

    def __call__(self, level: int, text: bytes | None, _user_data: object) -> None:
        piece = (text or b"").decode("utf-8", errors="replace")
        with self._lock:
            done: list[tuple[int, str]] = []
            if level != _GGML_CONT:
                if self._pending:
                    done.append((self._level, self._pending))
                    self._pending = ""
                self._level = level
            *lines, self._pending = (self._pending + piece).split("\n")
            done.extend((self._level, line) for line in lines)
        for line_level, line in done:
            if not line.strip():
                continue
            if line_level == _GGML_ERROR:
                log.warning("llama.cpp", message=line)
            else:
                log.debug("llama.cpp", message=line)


class _NoRedirect:
    """Stands in for llama-cpp-python's ``suppress_stdout_stderr``: with ``verbose=False`` that points
    file descriptors 1 and 2 of the whole process at /dev/null while a model loads, so every other
    thread's output vanished too (``parley serve``'s "listening on" line among it). With the log
    callback installed, llama.cpp writes nothing there itself."""

    def __init__(self, disable: bool = True) -> None:
        del disable

    def __enter__(self) -> _NoRedirect:
        return self

    def __exit__(self, *_: object) -> None:
        return None


def _quiet_native_logs() -> None:
    """Once per process, before the first model loads: llama.cpp logs through ``_NativeLog``."""
    global _native_log_callback
    with _native_log_lock:
        if _native_log_callback is not None:
            return
        import ctypes

        import llama_cpp
        import llama_cpp._internals
        import llama_cpp.llama

        callback = llama_cpp.llama_log_callback(_NativeLog())
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        _native_log_callback = callback  # llama.cpp keeps only the pointer: keep the object alive
        for module in (llama_cpp.llama, llama_cpp._internals):
            if hasattr(module, "suppress_stdout_stderr"):
                setattr(module, "suppress_stdout_stderr", _NoRedirect)  # noqa: B010  # untyped attribute
