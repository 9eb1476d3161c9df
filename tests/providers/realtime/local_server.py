"""A local WebSocket server that speaks the OpenAI Realtime protocol (GA event names), for tests.

It is a stand-in for the service, not for the adapter: it checks what a client sends and answers with the
documented shapes. Where each shape comes from:
- Connection: ``GET /v1/realtime?model=…`` with ``Authorization: Bearer <key>``; the server speaks first
  with ``session.created`` (OpenAI API reference, "Realtime — Server events"; openai-python
  ``resources/realtime/realtime.py`` builds this URL from ``websocket_base_url``).
- ``session.update`` → ``session.updated`` (``types/realtime/session_update_event_param.py``,
  ``realtime_session_create_request_param.py``: ``type: realtime``, ``audio.input.format``
  ``{type: audio/pcm, rate: 24000}``, ``audio.input.turn_detection`` with ``create_response`` and
  ``interrupt_response``, ``audio.output.voice``, ``tools``).
- ``input_audio_buffer.append`` (base64 PCM16 24 kHz); the server's VAD answers
  ``input_audio_buffer.speech_started`` (``audio_start_ms``, ``item_id``),
  ``input_audio_buffer.speech_stopped`` (``audio_end_ms``),
  ``input_audio_buffer.committed``, ``conversation.item.added``, and
  ``conversation.item.input_audio_transcription.completed`` (``transcript``)
  (``types/realtime/input_audio_buffer_speech_started_event.py`` …).
- A response: ``response.created``, ``response.output_item.added``,
  ``response.output_audio_transcript.delta``, ``response.output_audio.delta`` (base64 PCM16),
  ``response.output_audio.done``,
  ``response.output_audio_transcript.done``, ``response.output_item.done``, ``response.done`` with
  ``status`` and ``usage`` (``input_tokens``, ``output_tokens``, ``input_token_details``,
  ``output_token_details``) (``types/realtime/response_*_event.py``, ``realtime_response_usage.py``).
- Function calls: ``response.function_call_arguments.done`` (``call_id``, ``name``, ``arguments``); the
  client answers with ``conversation.item.create`` of a ``function_call_output`` then ``response.create``
  (Realtime guide, "Function calling").
- ``response.cancel``: the live response ends with ``response.done`` ``status: cancelled``; with none live
  the server answers an ``error`` (code ``response_cancel_not_active``).
- ``conversation.item.truncate`` (``item_id``, ``content_index``, ``audio_end_ms``): only assistant audio
  items; past the audio's duration is an error; the server-side transcript is deleted and
  ``conversation.item.truncated`` is sent (``types/realtime/conversation_item_truncate_event_param.py``:
  "Truncating audio will delete the server-side text transcript").
- With ``interrupt_response`` the server's VAD cancels a live response when the caller starts speaking.

Deterministic: it "transcribes" each committed turn as the next line of ``transcripts``, answers by
``Rule``s, and speaks a tone as long as the words (``ms_per_word`` each), sent ``speed`` times faster
than real time, as the service sends audio ahead of playback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

RATE = 24000
FRAME = RATE // 50  # 20 ms
VOICED_DBFS = -35.0
SPEECH_START_MS = 60


@dataclass(frozen=True, slots=True)
class Rule:
    """When a user turn contains ``pattern``: say ``reply``, or call ``tool`` and then say ``after_tool``
    (``{output}`` is replaced by the function's output)."""

    pattern: str
    reply: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    after_tool: str = "Done: {output}"


@dataclass(slots=True)
class _Response:
    id: str
    task: asyncio.Task[None] | None = None
    output: list[dict[str, Any]] = field(default_factory=list)
    status: str = "in_progress"


class LocalRealtime:
    def __init__(
        self,
        transcripts: list[str],
        rules: list[Rule],
        *,
        api_key: str = "sk-local-test",
        ms_per_word: int = 250,
        speed: float = 4.0,
        chunk_ms: int = 40,
        default_reply: str = "Sorry, I did not catch that.",
    ) -> None:
        self.transcripts = list(transcripts)
        self.rules = rules
        self.api_key = api_key
        self.ms_per_word = ms_per_word
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.default_reply = default_reply
        self.received: list[dict[str, Any]] = []
        """Every client event, in order."""
        self.problems: list[str] = []
        """What a client did against the protocol (tests assert there is none)."""
        self.items: list[dict[str, Any]] = []
        """The conversation as the service keeps it (assistant transcripts deleted on truncation)."""
        self.refused: list[int] = []
        self.truncated = asyncio.Event()
        """Set once an item was truncated (the tests' way to know the server got that far)."""
        self.session: dict[str, Any] = {}
        self.connections = 0
        self._server: Server | None = None
        self._ids = itertools.count(1)
        self.url = ""

    # --- lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> LocalRealtime:
        self._server = await serve(self._handle, "127.0.0.1", 0, process_request=self._check_request)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/v1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def sent_types(self) -> list[str]:
        return [str(e.get("type")) for e in self.received]

    def _id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):04d}"

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        model = parse_qs(url.query).get("model", [""])[0]
        if url.path != "/v1/realtime" or not model:
            self.refused.append(404)
            return connection.respond(HTTPStatus.NOT_FOUND, "no such endpoint\n")
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            self.refused.append(401)
            body = json.dumps({"error": {"type": "invalid_request_error", "code": "invalid_api_key"}})
            return Response(HTTPStatus.UNAUTHORIZED, "Unauthorized", Headers(), body.encode())
        return None

    # --- one connection -----------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        state = _Connection(self, ws)
        await state.send(
            "session.created", session={"type": "realtime", "model": "local", "id": self._id("sess")}
        )
        try:
            async for raw in ws:
                try:
                    event = json.loads(raw)
                except ValueError:
                    await state.error("invalid_request_error", "invalid_json", "not JSON")
                    continue
                self.received.append(event)
                await state.on_event(event)
        except ConnectionClosed:
            pass
        finally:
            await state.close()


class _Connection:
    def __init__(self, server: LocalRealtime, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.configured = False
        self.active: _Response | None = None
        self.pending_calls: dict[str, dict[str, Any]] = {}
        self.in_speech = False
        self.voiced_ms = 0
        self.silent_ms = 0
        self.buffer_ms = 0
        self.user_item = ""
        self.lock = asyncio.Lock()

    async def send(self, kind: str, **data: Any) -> None:
        payload = {"type": kind, "event_id": self.server._id("event"), **data}
        async with self.lock:
            await self.ws.send(json.dumps(payload))

    async def error(self, type_: str, code: str, message: str, *, problem: bool = True) -> None:
        if problem:
            self.server.problems.append(f"{code}: {message}")
        await self.send("error", error={"type": type_, "code": code, "message": message})

    async def close(self) -> None:
        if self.active is not None and self.active.task is not None:
            self.active.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.active.task

    # --- client events ------------------------------------------------------------------------------

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind != "session.update" and not self.configured:
            await self.error(
                "invalid_request_error", "session_not_configured", f"{kind} before session.update"
            )
            return
        handler = {
            "session.update": self.session_update,
            "input_audio_buffer.append": self.append,
            "conversation.item.create": self.item_create,
            "response.create": self.response_create,
            "response.cancel": self.response_cancel,
            "conversation.item.truncate": self.truncate,
        }.get(str(kind))
        if handler is None:
            await self.error("invalid_request_error", "unknown_event", f"unknown client event {kind!r}")
            return
        await handler(event)

    async def session_update(self, event: dict[str, Any]) -> None:
        session = event.get("session") or {}
        if session.get("type") != "realtime":
            await self.error("invalid_request_error", "invalid_value", "session.type must be 'realtime'")
            return
        audio = session.get("audio") or {}
        for side in ("input", "output"):
            fmt = (audio.get(side) or {}).get("format")
            if fmt is not None and fmt != {"type": "audio/pcm", "rate": RATE}:
                await self.error("invalid_request_error", "invalid_value", f"unsupported {side} format {fmt}")
                return
        _merge(self.server.session, session)
        self.configured = True
        await self.send("session.updated", session=self.server.session)

    def _detection(self) -> dict[str, Any]:
        return ((self.server.session.get("audio") or {}).get("input") or {}).get("turn_detection") or {}

    async def append(self, event: dict[str, Any]) -> None:
        pcm = np.frombuffer(base64.b64decode(event.get("audio", "")), dtype="<i2").astype(np.float64)
        detection = self._detection()
        silence_ms = int(detection.get("silence_duration_ms", 500))
        for offset in range(0, len(pcm) - FRAME + 1, FRAME):
            frame = pcm[offset : offset + FRAME] / 32768.0
            level = 20 * np.log10(np.sqrt(np.mean(frame**2)) + 1e-12)
            self.buffer_ms += 20
            if level > VOICED_DBFS:
                self.voiced_ms += 20
                self.silent_ms = 0
                if not self.in_speech and self.voiced_ms >= SPEECH_START_MS:
                    await self._speech_started(detection)
            else:
                self.voiced_ms = 0
                self.silent_ms += 20
                if self.in_speech and self.silent_ms >= silence_ms:
                    await self._speech_stopped(detection)

    async def _speech_started(self, detection: dict[str, Any]) -> None:
        self.in_speech = True
        self.user_item = self.server._id("item")
        padding = int(self._detection().get("prefix_padding_ms", 300))
        start = max(0, self.buffer_ms - SPEECH_START_MS - padding)  # documented: includes the padding
        await self.send("input_audio_buffer.speech_started", audio_start_ms=start, item_id=self.user_item)
        if self.active is not None and detection.get("interrupt_response", True):
            await self._cancel(self.active, reason="turn_detected")

    async def _speech_stopped(self, detection: dict[str, Any]) -> None:
        self.in_speech = False
        item_id = self.user_item
        # Documented: the end "includes the min_silence_duration_ms" (the silence that ended the turn).
        await self.send("input_audio_buffer.speech_stopped", audio_end_ms=self.buffer_ms, item_id=item_id)
        await self.send("input_audio_buffer.committed", item_id=item_id, previous_item_id=None)
        transcript = self.server.transcripts.pop(0) if self.server.transcripts else ""
        item = {
            "id": item_id,
            "type": "message",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": transcript}],
        }
        self.server.items.append(item)
        await self.send("conversation.item.added", item=item)
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            item_id=item_id,
            content_index=0,
            transcript=transcript,
        )
        if detection.get("create_response", True) and transcript:
            await self._start_response(None)

    async def item_create(self, event: dict[str, Any]) -> None:
        item = dict(event.get("item") or {})
        item.setdefault("id", self.server._id("item"))
        kind = item.get("type")
        if kind == "function_call_output":
            call_id = item.get("call_id")
            if call_id not in self.pending_calls:
                await self.error("invalid_request_error", "invalid_call_id", f"no function call {call_id!r}")
                return
            self.pending_calls.pop(call_id)
        elif kind == "message":
            if item.get("role") not in ("user", "system"):
                await self.error(
                    "invalid_request_error", "invalid_value", "clients add user or system messages"
                )
                return
        else:
            await self.error("invalid_request_error", "invalid_value", f"unexpected item type {kind!r}")
            return
        self.server.items.append(item)
        await self.send("conversation.item.added", item=item)

    async def response_create(self, event: dict[str, Any]) -> None:
        if self.active is not None:
            await self.error(
                "invalid_request_error",
                "conversation_already_has_active_response",
                "a response is already in progress",
            )
            return
        if self.pending_calls:
            self.server.problems.append("response.create before every function call had its output")
        options = event.get("response") or {}
        await self._start_response(options.get("instructions"))

    async def response_cancel(self, _: dict[str, Any]) -> None:
        if self.active is None:  # documented: cancelling with nothing live is an error (a harmless race)
            await self.error(
                "invalid_request_error", "response_cancel_not_active", "no active response", problem=False
            )
            return
        await self._cancel(self.active, reason="client_cancelled")

    async def truncate(self, event: dict[str, Any]) -> None:
        item = next((i for i in self.server.items if i.get("id") == event.get("item_id")), None)
        if item is None or item.get("role") != "assistant":
            await self.error(
                "invalid_request_error", "invalid_item", f"cannot truncate {event.get('item_id')!r}"
            )
            return
        end = event.get("audio_end_ms")
        if event.get("content_index") != 0 or not isinstance(end, int) or end < 0:
            await self.error(
                "invalid_request_error", "invalid_value", "content_index 0 and audio_end_ms >= 0"
            )
            return
        if end > item["audio_ms"]:
            await self.error(
                "invalid_request_error",
                "invalid_value",
                f"audio_end_ms {end} is past the audio ({item['audio_ms']} ms)",
            )
            return
        item["truncated_ms"] = end
        item["content"][0].pop("transcript", None)
        self.server.truncated.set()
        await self.send("conversation.item.truncated", item_id=item["id"], content_index=0, audio_end_ms=end)

    # --- responses ----------------------------------------------------------------------------------

    def _answer(self, instructions: str | None) -> tuple[str, Rule | None]:
        if instructions:
            marker = "nothing else:"
            return (
                instructions.split(marker, 1)[1].strip() if marker in instructions else instructions
            ), None
        last = self.server.items[-1] if self.server.items else {}
        if last.get("type") == "function_call_output":
            call = next((i for i in self.server.items if i.get("call_id") == last.get("call_id")), {})
            rule = next((r for r in self.server.rules if r.tool and r.tool == call.get("name")), None)
            template = rule.after_tool if rule is not None else "Done: {output}"
            return template.replace("{output}", str(last.get("output", ""))), None
        text = ""
        for part in last.get("content") or []:
            text = part.get("transcript") or part.get("text") or text
        for rule in self.server.rules:
            if rule.pattern.lower() in text.lower():
                return rule.reply, rule if rule.tool else None
        return self.server.default_reply, None

    async def _start_response(self, instructions: str | None) -> None:
        response = _Response(self.server._id("resp"))
        self.active = response
        text, rule = self._answer(instructions)
        response.task = asyncio.create_task(self._stream(response, text, rule))

    async def _stream(self, response: _Response, text: str, rule: Rule | None) -> None:
        await self.send(
            "response.created", response={"id": response.id, "status": "in_progress", "output": []}
        )
        if text:
            await self._speak(response, text)
        if rule is not None and rule.tool:
            await self._call(response, rule)
        await self._done(response, "completed")

    async def _speak(self, response: _Response, text: str) -> None:
        item: dict[str, Any] = {
            "id": self.server._id("item"),
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_audio", "transcript": ""}],
            "audio_ms": 0,
        }
        response.output.append(item)
        self.server.items.append(item)
        ids = {"response_id": response.id, "item_id": item["id"], "output_index": 0, "content_index": 0}
        await self.send(
            "response.output_item.added", response_id=response.id, output_index=0, item=_public(item)
        )
        chunk = RATE * self.server.chunk_ms // 1000
        for index, word in enumerate(text.split()):
            delta = word if index == 0 else " " + word
            item["content"][0]["transcript"] += delta
            await self.send("response.output_audio_transcript.delta", delta=delta, **ids)
            audio = _tone(self.server.ms_per_word, index)
            for offset in range(0, len(audio), chunk):
                piece = audio[offset : offset + chunk]
                item["audio_ms"] += round(len(piece) * 1000 / RATE)
                data = base64.b64encode(piece.astype("<i2").tobytes()).decode("ascii")
                await self.send("response.output_audio.delta", delta=data, **ids)
                await asyncio.sleep(len(piece) / RATE / self.server.speed)
        await self.send("response.output_audio.done", **ids)
        await self.send(
            "response.output_audio_transcript.done", transcript=item["content"][0]["transcript"], **ids
        )
        await self.send(
            "response.output_item.done", response_id=response.id, output_index=0, item=_public(item)
        )

    async def _call(self, response: _Response, rule: Rule) -> None:
        assert rule.tool is not None
        call_id = self.server._id("call")
        arguments = json.dumps(rule.arguments)
        item = {
            "id": self.server._id("item"),
            "type": "function_call",
            "call_id": call_id,
            "name": rule.tool,
            "arguments": arguments,
        }
        response.output.append(item)
        self.server.items.append(item)
        index = len(response.output) - 1
        await self.send("response.output_item.added", response_id=response.id, output_index=index, item=item)
        await self.send(
            "response.function_call_arguments.delta",
            response_id=response.id,
            item_id=item["id"],
            output_index=index,
            call_id=call_id,
            delta=arguments,
        )
        await self.send(
            "response.function_call_arguments.done",
            response_id=response.id,
            item_id=item["id"],
            output_index=index,
            call_id=call_id,
            name=rule.tool,
            arguments=arguments,
        )
        self.pending_calls[call_id] = item
        await self.send("response.output_item.done", response_id=response.id, output_index=index, item=item)

    async def _cancel(self, response: _Response, reason: str) -> None:
        if response.task is not None and response.task is not asyncio.current_task():
            response.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await response.task
        await self._done(response, "cancelled", reason)

    async def _done(self, response: _Response, status: str, reason: str | None = None) -> None:
        if self.active is not response:
            return
        self.active = None
        response.status = status
        words = sum(
            len(str(i.get("content", [{}])[0].get("transcript", "")).split())
            for i in response.output
            if i.get("type") == "message"
        )
        audio_tokens = sum(int(i.get("audio_ms", 0)) // 50 for i in response.output)
        usage: dict[str, Any] = {
            "total_tokens": 0,
            "input_tokens": 20 * len(self.server.items),
            "output_tokens": words + audio_tokens,
            "input_token_details": {
                "text_tokens": 20 * len(self.server.items),
                "audio_tokens": 0,
                "cached_tokens": 0,
            },
            "output_token_details": {"text_tokens": words, "audio_tokens": audio_tokens},
        }
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        details = {"type": status, "reason": reason} if reason else None
        await self.send(
            "response.done",
            response={
                "id": response.id,
                "status": status,
                "status_details": details,
                "output": [_public(i) for i in response.output],
                "usage": usage,
            },
        )


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k not in ("audio_ms", "truncated_ms")}


def _merge(into: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _tone(ms: int, index: int) -> np.ndarray:
    """A word: a tone burst (its pitch steps with the word's position), with a short gap after it."""
    n = RATE * ms // 1000
    t = np.arange(n) / RATE
    tone = 0.25 * np.sin(2 * np.pi * (330 + 20 * (index % 5)) * t)
    tone[-RATE // 50 :] = 0.0
    return (tone * 32767).astype(np.int16)
