"""Any OpenAI-compatible chat API (OpenAI, vLLM, llama.cpp server, Ollama) through the ``openai`` SDK.

``AsyncOpenAI`` streams chat completions without blocking the loop. Its own retries are off
(``max_retries=0``): ours happen only before the first byte of a reply, so a reply is never spoken twice,
and a first-token deadline turns a provider that accepts the request but says nothing into
``ProviderUnavailable``, which the failover chain (``parley.providers.failover``) acts on.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, cast

import openai
import structlog
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletionChunk
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from parley.providers.errors import ProviderCallError, ProviderRejected, ProviderUnavailable
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec, Usage
from parley.redaction import excerpt, without_secrets

log = structlog.get_logger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
"""Worth asking the same server again: it was busy or broke for a moment."""
REJECT_STATUSES = frozenset({400, 413, 422})
"""The request itself was refused; another provider would most likely refuse it too."""
BODY_EXCERPT = 500


class _Retryable(ProviderUnavailable):
    """A failure before any reply that the same server may well not repeat (refused, 5xx, 429)."""


def to_wire(message: ChatMessage) -> dict[str, Any]:
    """One ChatMessage in the OpenAI chat format."""
    wire: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.tool_calls:
        wire["content"] = message.content or None
        wire["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {
                    "name": call.name,
                    "arguments": call.raw_arguments or json.dumps(call.arguments),
                },
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id is not None:
        wire["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        wire["name"] = message.name
    return wire


def tool_to_wire(tool: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": tool.name, "description": tool.description, "parameters": tool.parameters},
    }


@dataclass(slots=True)
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""

    def complete(self, index: int) -> ToolCall:
        try:
            parsed = json.loads(self.arguments) if self.arguments.strip() else {}
        except json.JSONDecodeError:
            parsed = None
        return ToolCall(
            id=self.id or f"call_{index}",
            name=self.name,
            arguments=parsed if isinstance(parsed, dict) else {},
            raw_arguments=self.arguments,
        )


_PROGRESS = LLMChunk()
"""Internal marker: a tool-call fragment arrived (the model is answering, nothing to hand on yet)."""


class OpenAICompatibleModel:
    """Streams chat completions; tool calls arrive whole, after their streamed fragments are joined.

    Retries happen only before the first byte of a reply (connection failures, timeouts and retryable
    statuses). With ``first_token_timeout`` (seconds), a reply whose first token (or tool-call fragment)
    has not arrived by then, retries included, fails with ``ProviderUnavailable``. With
    ``stall_timeout`` (seconds), so does a reply that goes quiet that long between two chunks: the caller
    has heard the start of the answer and would otherwise sit in dead air for the whole read timeout.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        timeout: float = 30.0,
        *,
        connect_timeout: float = 5.0,
        max_attempts: int = 3,
        first_token_timeout: float | None = None,
        stall_timeout: float | None = None,
        extra_body: dict[str, Any] | None = None,
        provider: str = "openai",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai-compatible/{model}"
        self.provider = provider
        self.max_attempts = max(1, max_attempts)
        self.first_token_timeout = first_token_timeout
        self.stall_timeout = stall_timeout
        self.extra_body = dict(extra_body or {})
        self._timeout = openai.Timeout(timeout, connect=connect_timeout)
        self._api_key = api_key
        self._client: AsyncOpenAI | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None

    def count_tokens(self, text: str) -> int:
        """An estimate (about four characters a token): the remote tokenizer is not at hand."""
        return math.ceil(len(text) / 4)

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        """Open the connection (TCP and TLS) ahead of the first turn; failures are only logged.

        Remote servers keep their own prompt caches, so ``messages`` and ``tools`` are not sent.
        """
        try:
            await self._sdk().models.list(extra_headers=self._auth())
        except Exception as error:  # any answer at all (an HTML page, a stream the SDK cannot parse)
            log.warning(
                "llm warm-up failed",
                provider=self.provider,
                base_url=self.base_url,
                error=without_secrets(repr(error), [self._api_key] if self._api_key else []),
            )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        tool_choice: str | None = None,
        strict: bool = False,
    ) -> AsyncIterator[LLMChunk]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [to_wire(m) for m in messages],
            "max_tokens": max_tokens,
            "temperature": temperature,
        }
        if tools:
            request["tools"] = [tool_to_wire(t) for t in tools]
            if tool_choice is not None and any(t.name == tool_choice for t in tools):
                # A forced call's arguments come back as a JSON object already; ``strict`` is not sent
                # (OpenAI's strict schemas need every property required and no others allowed).
                request["tool_choice"] = {"type": "function", "function": {"name": tool_choice}}
        chunks: AsyncIterator[LLMChunk] | None = None
        usage: Usage | None = None
        text_out = ""
        finish: str | None = None
        try:
            first, chunks = await self._first(request)
            pending: Iterable[LLMChunk] = (first,)
            while True:
                for chunk in pending:
                    if chunk is _PROGRESS:
                        continue
                    if chunk.usage is not None:
                        usage = chunk.usage
                        finish = chunk.finish_reason or finish
                        continue
                    if chunk.finish_reason is not None:
                        finish = chunk.finish_reason
                        continue
                    text_out += chunk.text
                    yield chunk
                try:
                    async with asyncio.timeout(self.stall_timeout):
                        pending = (await anext(chunks),)
                except StopAsyncIteration:
                    break
                except TimeoutError as error:
                    assert self.stall_timeout is not None
                    raise ProviderUnavailable(
                        f"{self.base_url} stopped mid-reply: nothing for "
                        f"{round(self.stall_timeout * 1000)} ms after {len(text_out)} characters",
                        provider=self.provider,
                    ) from error
        finally:
            if chunks is not None:
                await cast(Any, chunks).aclose()  # also what cancelling the consumer does: the stream closes
        if usage is None:
            usage = Usage(sum(self.count_tokens(m.content) for m in messages), self.count_tokens(text_out))
        yield LLMChunk(usage=usage, finish_reason=finish or "stop")

    async def _first(self, request: dict[str, Any]) -> tuple[LLMChunk, AsyncIterator[LLMChunk]]:
        """Open the stream (with retries) and wait for its first sign of an answer, within the deadline."""
        chunks: AsyncIterator[LLMChunk] | None = None
        try:
            async with asyncio.timeout(self.first_token_timeout):
                stream = await self._open(request)
                chunks = self._chunks(stream)
                try:
                    return await anext(chunks), chunks
                except StopAsyncIteration:
                    raise ProviderUnavailable(
                        f"{self.base_url} ended the reply without a word", provider=self.provider
                    ) from None
        except TimeoutError as error:
            if chunks is not None:
                await cast(Any, chunks).aclose()
            assert self.first_token_timeout is not None
            raise ProviderUnavailable(
                f"no first token from {self.base_url} within {round(self.first_token_timeout * 1000)} ms",
                provider=self.provider,
            ) from error
        except BaseException:
            if chunks is not None:
                await cast(Any, chunks).aclose()
            raise

    def _auth(self) -> dict[str, Any]:
        """A keyless server (a local llama.cpp) is sent no bearer token at all, not a made-up one."""
        return {} if self._api_key else {"Authorization": openai.omit}

    def _sdk(self) -> AsyncOpenAI:
        # A client's pooled connections belong to one event loop; tests and tools may run several.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key or "unused",
                timeout=self._timeout,
                max_retries=0,
            )
            self._client_loop = loop
        return self._client

    async def _open(self, request: dict[str, Any]) -> AsyncStream[ChatCompletionChunk]:
        """Send the request and wait for a 2xx status line, retrying only failures before any reply."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=0.1, max=1.0),
            retry=retry_if_exception(lambda e: isinstance(e, _Retryable)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._open_once(request)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _open_once(self, request: dict[str, Any]) -> AsyncStream[ChatCompletionChunk]:
        try:
            stream: AsyncStream[ChatCompletionChunk] = await self._sdk().chat.completions.create(
                **request,
                stream=True,
                stream_options={"include_usage": True},
                extra_headers={"Accept": "text/event-stream", **self._auth()},
                extra_body=self.extra_body or None,
            )
        except openai.APIError as error:
            raise self._typed(error) from error
        content_type = stream.response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            # A server that ignored "stream": true would otherwise look like an empty reply.
            try:
                body = (await stream.response.aread()).decode("utf-8", "replace")
            finally:
                await stream.close()
            raise ProviderUnavailable(
                f"{self.base_url} answered {content_type or 'without a content type'}, "
                f"expected a text/event-stream reply: {_cut(body, self._api_key)}",
                provider=self.provider,
                status=stream.response.status_code,
            )
        return stream

    async def _chunks(self, stream: AsyncStream[ChatCompletionChunk]) -> AsyncIterator[LLMChunk]:
        """The stream's deltas as LLMChunks; tool calls whole at their finish, ``_PROGRESS`` meanwhile."""
        calls: dict[int, _PartialCall] = {}
        try:
            async for chunk in stream:
                for choice in chunk.choices or ():
                    delta = choice.delta
                    if delta is not None and delta.content:
                        yield LLMChunk(text=delta.content)
                    fragments = (delta.tool_calls if delta is not None else None) or ()
                    for fragment in fragments:
                        _merge(calls, fragment.index, fragment.id, fragment.function)
                    if fragments:
                        yield _PROGRESS
                    if choice.finish_reason:
                        for index in sorted(calls):
                            yield LLMChunk(tool_call=calls[index].complete(index))
                        calls.clear()
                        yield LLMChunk(finish_reason=choice.finish_reason)
                if chunk.usage is not None:
                    yield LLMChunk(
                        usage=Usage(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
                    )
        except openai.APIError as error:
            raise self._typed(error, streaming=True) from error
        except json.JSONDecodeError as error:
            raise ProviderUnavailable(
                f"malformed stream chunk from {self.base_url}: {_cut(error.doc, self._api_key)}",
                provider=self.provider,
            ) from error
        finally:
            await stream.close()
        for index in sorted(calls):  # a server that ended without a finish_reason
            yield LLMChunk(tool_call=calls[index].complete(index))

    def _typed(self, error: openai.APIError, *, streaming: bool = False) -> ProviderCallError:
        """The SDK's error as ours: what the failover chain and the retries act on."""
        if isinstance(error, openai.APITimeoutError):
            where = "while streaming from" if streaming else "connecting to"
            return _Retryable(f"timed out {where} {self.base_url}", provider=self.provider)
        if isinstance(error, openai.APIConnectionError):
            if streaming:
                return ProviderUnavailable(
                    f"connection lost while streaming: {error}", provider=self.provider
                )
            return _Retryable(f"cannot reach {self.base_url}: {error}", provider=self.provider)
        if isinstance(error, openai.APIStatusError):
            status = error.status_code
            message = f"chat request failed (HTTP {status}): {_excerpt(error, self._api_key)}"
            if status in REJECT_STATUSES:
                return ProviderRejected(message, provider=self.provider, status=status)
            kind = _Retryable if status in RETRY_STATUSES or status >= 500 else ProviderUnavailable
            return kind(message, provider=self.provider, status=status)
        return ProviderUnavailable(
            f"server reported an error mid-stream: {_excerpt(error, self._api_key)}", provider=self.provider
        )


def _excerpt(error: openai.APIError, api_key: str | None) -> str:
    """The start of the server's error body, without the key if the server quoted it."""
    body = error.body
    text = body if isinstance(body, str) else json.dumps(body) if body is not None else error.message
    return _cut(text, api_key)


def _cut(text: str, api_key: str | None) -> str:
    """The start of what the server sent, redacted before it is cut: a key cut first would no longer
    match and its first characters would be shown."""
    return excerpt(text, BODY_EXCERPT, [api_key] if api_key else [])


def _merge(calls: dict[int, _PartialCall], index: int | None, call_id: str | None, function: Any) -> None:
    """Join one streamed tool_call delta into the call with the same index."""
    call = calls.setdefault(len(calls) if index is None else int(index), _PartialCall())
    call.id = call_id or call.id
    if function is not None:
        call.name += function.name or ""
        call.arguments += function.arguments or ""
