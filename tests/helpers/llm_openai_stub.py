"""A tiny loopback HTTP server that replays scripted OpenAI-format responses, for adapter tests.

Raw asyncio rather than a web framework, so a test can send exactly the bytes it wants: fragmented
SSE, a broken JSON line, a stall, or a reply cut short.

The shapes follow OpenAI's API reference for chat completions ("Create chat completion" with
``stream: true`` and the "chat completion chunk object": ``choices[].delta.content``,
``delta.tool_calls[]`` fragments joined by ``index``, ``finish_reason``, a last ``usage`` chunk with
empty ``choices`` under ``stream_options.include_usage``, ``data: [DONE]``; errors as
``{"error": {"message": …}}``), as the official SDK reads them (``openai/_streaming.py``,
``openai/types/chat/chat_completion_chunk.py``). Tests check what the adapter sent: path, headers
(``Authorization: Bearer …`` or none) and body.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any


def sse(*events: dict[str, Any] | str) -> list[bytes]:
    """SSE frames for each event (dicts are JSON-encoded; strings go out as they are)."""
    return [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events]


@dataclass
class StubResponse:
    status: int = 200
    chunks: list[bytes] = field(default_factory=list)
    delay: float = 0.0
    """Pause before each chunk, to look like a model producing tokens."""
    content_type: str = "text/event-stream"


@dataclass
class StubServer:
    """Answers the n-th request with ``responses[n]`` (the last one repeats) and records requests."""

    responses: list[StubResponse]
    requests: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    """Each request's headers, names lower-cased."""
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    chunks_sent: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}/v1"

    async def __aenter__(self) -> StubServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def kill(self) -> None:
        """Stop listening at once, like a crashed server: from now on connections are refused."""
        assert self._server is not None
        self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            self.paths.append(lines[0].split(" ")[1])
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
            }
            self.headers.append(headers)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(json.loads(body) if body else {})
            reply = self.responses[min(len(self.requests) - 1, len(self.responses) - 1)]
            writer.write(
                f"HTTP/1.1 {reply.status} Stub\r\nContent-Type: {reply.content_type}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            watcher = asyncio.create_task(reader.read())  # EOF here means the client hung up
            for chunk in reply.chunks:
                if reply.delay:
                    await asyncio.wait({watcher}, timeout=reply.delay)
                if watcher.done():
                    self.disconnected.set()
                    return
                writer.write(chunk)
                await writer.drain()
                self.chunks_sent += 1
            watcher.cancel()
        except (ConnectionError, asyncio.IncompleteReadError):
            self.disconnected.set()
        finally:
            writer.close()


TOOL_CALL_STREAM = sse(
    # Shaped like OpenAI's streamed tool calls: the id and name come first, the JSON arguments arrive
    # in arbitrary fragments, the second call has its own index, usage closes the stream.
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_w1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ],
                },
                "finish_reason": None,
            }
        ],
    },
    *[
        {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": "stub",
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": part}}]},
                    "finish_reason": None,
                }
            ],
        }
        for part in ['{"ci', 'ty": "Par', 'is", "un', 'its": "celsius"}']
    ],
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 1,
                            "id": "call_t2",
                            "type": "function",
                            "function": {"name": "get_time", "arguments": '{"zone":'},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "stub",
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 1, "function": {"arguments": ' "CET"}'}}]},
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "stub",
        "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "stub",
        "choices": [],
        "usage": {"prompt_tokens": 57, "completion_tokens": 31, "total_tokens": 88},
    },
    "[DONE]",
)


def text_stream(words: list[str], *, usage: bool = True) -> list[bytes]:
    """A plain streamed answer, one word a chunk."""
    events: list[dict[str, Any] | str] = [
        {"choices": [{"index": 0, "delta": {"content": w}, "finish_reason": None}]} for w in words
    ]
    events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        events.append({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": len(words)}})
    events.append("[DONE]")
    return sse(*events)
