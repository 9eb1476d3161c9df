"""Any OpenAI-compatible chat API (OpenAI, vLLM, llama.cpp server, Ollama) over streamed SSE."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec, Usage

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
BODY_EXCERPT = 500


class OpenAICompatError(Exception):
    """A failed chat request; ``status`` is None when no HTTP response arrived (refused, timed out)."""

    def __init__(self, message: str, *, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body[:BODY_EXCERPT]
        detail = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{message}{detail}" + (f": {self.body}" if self.body else ""))

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRY_STATUSES


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


class OpenAICompatibleModel:
    """Streams chat completions; tool calls arrive whole, after their streamed fragments are joined.

    Retries happen only before the first byte of a reply (connection failures, timeouts and
    retryable statuses), so a reply is never spoken twice.
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
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.name = f"openai-compatible/{model}"
        self.max_attempts = max_attempts
        self.extra_body = dict(extra_body or {})
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._headers = {"Accept": "text/event-stream"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._client: httpx.AsyncClient | None = None
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
            await self._http().get(f"{self.base_url}/models")
        except httpx.HTTPError as error:
            log.warning("warm-up of %s failed: %s", self.base_url, error)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [to_wire(m) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
            "temperature": temperature,
            **self.extra_body,
        }
        if tools:
            body["tools"] = [tool_to_wire(t) for t in tools]
        response = await self._open(body)
        calls: dict[int, _PartialCall] = {}
        usage: Usage | None = None
        finish: str | None = None
        text_out = ""
        try:
            async for payload in _sse_data(response):
                chunk = _decode(payload)
                if isinstance(chunk.get("usage"), dict):
                    usage = Usage(
                        int(chunk["usage"].get("prompt_tokens") or 0),
                        int(chunk["usage"].get("completion_tokens") or 0),
                    )
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    if delta.get("content"):
                        text_out += delta["content"]
                        yield LLMChunk(text=delta["content"])
                    for fragment in delta.get("tool_calls") or ():
                        _merge(calls, fragment)
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
                        for index in sorted(calls):
                            yield LLMChunk(tool_call=calls[index].complete(index))
                        calls.clear()
        except httpx.TimeoutException as error:
            raise OpenAICompatError(f"timed out while streaming from {self.base_url}") from error
        except httpx.TransportError as error:
            raise OpenAICompatError(f"connection lost while streaming: {error}") from error
        finally:
            await response.aclose()  # also what cancelling the consumer does: the stream is closed
        for index in sorted(calls):  # a server that ended without a finish_reason
            yield LLMChunk(tool_call=calls[index].complete(index))
        if usage is None:
            usage = Usage(sum(self.count_tokens(m.content) for m in messages), self.count_tokens(text_out))
        yield LLMChunk(usage=usage, finish_reason=finish or "stop")

    def _http(self) -> httpx.AsyncClient:
        # A client's pooled connections belong to one event loop; tests and tools may run several.
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            self._client = httpx.AsyncClient(timeout=self._timeout, headers=self._headers)
            self._client_loop = loop
        return self._client

    async def _open(self, body: dict[str, Any]) -> httpx.Response:
        """Send the request and wait for a 2xx status line, retrying only failures before any reply."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=wait_exponential(multiplier=0.25, max=2.0),
            retry=retry_if_exception(lambda e: isinstance(e, OpenAICompatError) and e.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._open_once(body)
        raise AssertionError("unreachable: tenacity reraises the last error")

    async def _open_once(self, body: dict[str, Any]) -> httpx.Response:
        client = self._http()
        url = f"{self.base_url}/chat/completions"
        try:
            response = await client.send(client.build_request("POST", url, json=body), stream=True)
        except httpx.TimeoutException as error:
            raise OpenAICompatError(f"timed out connecting to {url}") from error
        except httpx.TransportError as error:
            raise OpenAICompatError(f"cannot reach {url}: {error}") from error
        if response.status_code >= 400:
            try:
                excerpt = (await response.aread())[:BODY_EXCERPT].decode("utf-8", "replace")
            except httpx.HTTPError:
                excerpt = ""
            finally:
                await response.aclose()
            raise OpenAICompatError("chat request failed", status=response.status_code, body=excerpt)
        if "text/event-stream" not in response.headers.get("content-type", ""):
            # A server that ignored "stream": true would otherwise look like an empty reply.
            excerpt = (await response.aread())[:BODY_EXCERPT].decode("utf-8", "replace")
            await response.aclose()
            raise OpenAICompatError(
                "expected a text/event-stream reply", status=response.status_code, body=excerpt
            )
        return response


def _merge(calls: dict[int, _PartialCall], fragment: dict[str, Any]) -> None:
    """Join one streamed tool_call delta into the call with the same index."""
    index = int(fragment.get("index", len(calls)))
    call = calls.setdefault(index, _PartialCall())
    call.id = fragment.get("id") or call.id
    function = fragment.get("function") or {}
    call.name += function.get("name") or ""
    call.arguments += function.get("arguments") or ""


def _decode(payload: str) -> dict[str, Any]:
    try:
        chunk = json.loads(payload)
    except json.JSONDecodeError as error:
        raise OpenAICompatError("malformed stream chunk", body=payload) from error
    if not isinstance(chunk, dict):
        raise OpenAICompatError("malformed stream chunk", body=payload)
    if "error" in chunk:
        raise OpenAICompatError("server reported an error mid-stream", body=json.dumps(chunk["error"]))
    return chunk


async def _sse_data(response: httpx.Response) -> AsyncIterator[str]:
    """The data of each server-sent event, read line by line as it arrives, up to ``[DONE]``."""
    data: list[str] = []
    async for line in response.aiter_lines():
        if line == "":
            if data:
                payload, data = "\n".join(data), []
                if payload.strip() == "[DONE]":
                    return
                yield payload
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        # Comments (":"), "event:", "id:" and "retry:" lines carry nothing a chat reply needs.
    if data and "\n".join(data).strip() != "[DONE]":
        yield "\n".join(data)
