"""Instruct models prompted through their own chat template (the Jinja template inside the GGUF file).

The template is rendered in Jinja's immutable sandbox, so a template from a model file cannot reach
Python objects. Message text is data: special-token markers in it (``<|im_start|>``, ``<tool_call>``…)
are removed before rendering, so nothing a caller says or an agent author writes can open a turn of its
own or forge a tool call.

Tool calls follow the Hermes convention that Qwen 2.5 (and many others) were trained on: JSON objects
``{"name": …, "arguments": {…}}``, each between ``<tool_call>`` tags; a small model sometimes drops the
tags, so a reply that *starts* with such an object counts too. Several objects in one reply are parallel
calls. A reply that opens with JSON or markup but holds no call of an offered tool says nothing; the
engine then asks again without tools.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jinja2.sandbox import ImmutableSandboxedEnvironment

from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec
from parley.providers.llm.prompting import ReplyCleaner

TOOL_OPEN, TOOL_CLOSE = "<tool_call>", "</tool_call>"
_MARKERS = re.compile(r"<\|[A-Za-z0-9_]{1,40}\|>|</?(?:tool_call|tool_response|tools)>")
_CHAT_STOPS = ("<|im_end|>", "<|endoftext|>", "<|im_start|>", "<|eot_id|>", "<end_of_turn>")
"""End-of-turn texts, in case a model writes one as plain text instead of its special token."""


class ChatTemplateError(ValueError):
    """The model file has no chat template, or it cannot be rendered."""


def _tojson(value: Any, indent: int | None = None) -> str:
    # Hugging Face renders templates with json.dumps (no HTML escaping), unlike Jinja's own filter.
    return json.dumps(value, ensure_ascii=False, indent=indent)


FENCE = "```"
"""A Markdown code fence: Qwen 2.5 Coder sometimes writes its call as a fenced ``json`` block."""


def opens_with_markup(text: str) -> bool:
    """JSON, a tag or a code fence where words should start: a tool call, or a small model writing one
    as text (a backtick is never speech)."""
    return text.lstrip().startswith(("{", "<", "`"))


_NEXT_WORDS = "\ue000next\ue000"
"""Stands for words not heard yet while a prompt is rendered: private-use characters, which no caller says
(should a typed message hold them, a read-ahead only stops too early)."""


def clean_content(text: str) -> str:
    """Message text without special-token markers (they would act as structure, not words)."""
    return _MARKERS.sub("", text)


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A rendered chat: ``prefix`` (the leading system messages and tools) and a render per history cut."""

    prefix: str
    lines: tuple[ChatMessage, ...]
    """The history after the leading system messages (named ``lines`` like the transcript prompt's)."""
    render: Callable[[int], str]

    def text(self, skip: int = 0) -> str:
        """The whole prompt without the ``skip`` oldest history messages, ready for the reply."""
        return self.render(skip)


class ChatTemplate:
    """A GGUF file's chat template, rendered the way the model was trained to read it."""

    def __init__(self, source: str, bos_token: str = "", eos_token: str = "") -> None:
        if not source.strip():
            raise ChatTemplateError("the model file has no chat template (tokenizer.chat_template)")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.filters["tojson"] = _tojson
        try:
            self._template = env.from_string(source)
        except Exception as exc:  # jinja2.TemplateSyntaxError and friends: the file is unusable as is
            raise ChatTemplateError(f"the model's chat template does not parse: {exc}") from exc
        self._special = {"bos_token": bos_token, "eos_token": eos_token}

    def render(
        self, messages: list[ChatMessage], tools: list[ToolSpec] | None, *, generation_prompt: bool = True
    ) -> str:
        return self._template.render(
            messages=[_as_dict(m) for m in messages],
            tools=[_tool_dict(t) for t in tools] if tools else None,
            add_generation_prompt=generation_prompt,
            **self._special,
        )

    def opening(self, messages: list[ChatMessage], tools: list[ToolSpec] | None) -> str:
        """The prompt of ``messages`` followed by a user message, up to where that message's words go
        (empty when the template hides where that is)."""
        rendered = self.render([*messages, ChatMessage("user", _NEXT_WORDS)], tools, generation_prompt=False)
        cut = rendered.find(_NEXT_WORDS)
        return rendered[:cut] if cut >= 0 else ""

    def prompt(self, messages: list[ChatMessage], tools: list[ToolSpec] | None) -> ChatPrompt:
        leading = 0
        while leading < len(messages) and messages[leading].role == "system":
            leading += 1
        system, history = messages[:leading], messages[leading:]

        def render(skip: int) -> str:
            kept = history[skip:]
            # A cut must not leave a tool result (or the call that awaits it) without its partner.
            while kept and (kept[0].role == "tool" or kept[0].tool_calls):
                kept = kept[1:]
            return self.render([*system, *kept], tools)

        return ChatPrompt(self.prefix(system, tools), tuple(history), render)

    def prefix(self, system: list[ChatMessage], tools: list[ToolSpec] | None) -> str:
        """The part of every prompt that only the agent decides: rendered once to warm the KV cache."""
        if not system:
            return ""
        return self.render(system, tools, generation_prompt=False)


def _as_dict(message: ChatMessage) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": clean_content(message.content)}
    if message.tool_calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    if message.name:
        out["name"] = message.name
    return out


def _tool_dict(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": clean_content(tool.description),
            "parameters": tool.parameters,
        },
    }


class ChatReplyParser:
    """Streams a chat model's reply: speakable text goes out at once; tool-call JSON is held and parsed.

    ``emit`` receives ``LLMChunk``s. Text before a tool call is spoken (a model may say "Let me book that"
    and then call); anything after the first call is tool calls only.
    """

    def __init__(
        self,
        offered: set[str],
        emit: Callable[[LLMChunk], None],
        new_id: Callable[[], str],
        *,
        single_call: bool = False,
        in_prompt: set[str] | None = None,
    ) -> None:
        """``single_call``: the reply is complete with its first tool call (a required call).
        ``in_prompt``: the tools the model was shown, when more than ``offered`` (those it may call):
        markup it writes is a call all the same, never speech."""
        self._offered = offered
        self._shown = offered if in_prompt is None else offered | in_prompt
        self._emit = emit
        self._new_id = new_id
        self._single_call = single_call
        self._cleaner = ReplyCleaner(stops=_CHAT_STOPS)
        self._raw = ""
        self._spoken_upto = 0
        self._calls_from: int | None = None
        self._stopped = False

    @property
    def text(self) -> str:
        """Everything taken so far, as written."""
        return self._raw

    def add(self, piece: str) -> bool:
        """Take the next decoded text; True when the reply is complete."""
        self._raw += piece
        if self._calls_from is not None and self._single_call:
            return isinstance(first_json_value(self._raw[self._calls_from :]), dict)
        if self._calls_from is None:
            self._calls_from = self._call_start()
            limit = self._calls_from if self._calls_from is not None else self._safe_end()
            if limit > self._spoken_upto:
                text, self._stopped = self._cleaner.feed(self._raw[self._spoken_upto : limit])
                self._spoken_upto = limit
                if text:
                    self._emit(LLMChunk(text=text))
        return self._stopped

    def finish(self) -> bool:
        """Emit what is still held back; True when the reply had tool calls."""
        if self._calls_from is None and not self._stopped:
            text, _ = self._cleaner.feed(self._raw[self._spoken_upto :])
            if text:
                self._emit(LLMChunk(text=text))
        if self._calls_from is None:
            tail = self._cleaner.flush()
            if tail:
                self._emit(LLMChunk(text=tail))
            return False
        calls = parse_tool_calls(self._raw[self._calls_from :], self._offered, self._new_id)
        for call in calls:
            self._emit(LLMChunk(tool_call=call))
        return bool(calls)

    def _call_start(self) -> int | None:
        marks = [TOOL_OPEN, FENCE] if self._shown else [TOOL_OPEN]
        found = [at for mark in marks if (at := self._raw.find(mark)) >= 0]
        if found:
            return min(found)
        head = self._raw.lstrip()
        # A reply that opens with JSON or markup is a tool call, or a small model inventing tool
        # definitions (``<tools>{"type": "function"…``): either way nothing in it is speakable.
        if self._shown and opens_with_markup(head):
            return len(self._raw) - len(head)
        return None

    def _safe_end(self) -> int:
        """How far text may be spoken: not into what could still become ``<tool_call>``, a code fence
        or a ``{``."""
        raw = self._raw
        if self._shown and not raw.strip():
            return 0
        for n in range(min(len(TOOL_OPEN), len(raw)), 0, -1):
            if TOOL_OPEN.startswith(raw[-n:]) or (self._shown and FENCE.startswith(raw[-n:])):
                return len(raw) - n
        return len(raw)


_DECODER = json.JSONDecoder()


def first_json_value(text: str) -> object | None:
    """The first complete JSON object in ``text``, or a bare value it opens with (``3``); None when
    there is neither (yet)."""
    stripped = text.lstrip()
    start = stripped.find("{") if stripped.startswith("<") else 0
    if start < 0:
        return None
    try:
        value: object = _DECODER.raw_decode(stripped, start)[0]
    except json.JSONDecodeError:
        return None
    return value


def parse_tool_calls(text: str, offered: set[str], new_id: Callable[[], str]) -> list[ToolCall]:
    """Every ``{"name": …, "arguments": …}`` object in ``text`` naming an offered tool, in order."""
    calls: list[ToolCall] = []
    index = 0
    while (start := text.find("{", index)) >= 0:
        try:
            value, end = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError:
            index = start + 1
            continue
        index = end
        if not isinstance(value, dict) or value.get("name") not in offered:
            continue
        arguments = value.get("arguments", value.get("parameters", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                arguments = {}
        arguments = arguments if isinstance(arguments, dict) else {}
        raw = json.dumps(arguments, ensure_ascii=False)
        calls.append(ToolCall(id=new_id(), name=str(value["name"]), arguments=arguments, raw_arguments=raw))
    return calls
