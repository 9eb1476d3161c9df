"""OpenAI Realtime as a speech-to-speech engine, through the official ``openai`` SDK's realtime client.

The SDK's ``AsyncOpenAI.realtime.connect`` opens the documented WebSocket (``<base>/realtime?model=…``,
``Authorization: Bearer``) on ``websockets``' asyncio client, honours a custom ``websocket_base_url`` (the
operator's PARLEY_OPENAI_REALTIME_URL) and sends typed client events; the server's events are read as
raw JSON (``recv_bytes``) so both the GA names (``response.output_audio.delta``,
``response.output_audio_transcript.delta``) and the beta ones (``response.audio.delta``,
``response.audio_transcript.delta``) are understood, whichever a deployment speaks.

What Parley asks of it (``parley.providers.s2s.base``):
- setup: ``session.update`` with the agent's instructions, its tools as functions, PCM16 at 24 kHz both
  ways, server (or semantic) VAD, input transcription, the voice; the reply waits for ``session.updated``.
- barge-in: ``response.cancel`` while a response is live, then ``conversation.item.truncate`` of the
  audio item at what the caller heard (``audio_end_ms``), so the model's memory holds only that.
- tools: ``response.function_call_arguments.done`` → the session runs the Parley tool →
  ``conversation.item.create`` (``function_call_output``) → once every call of that response has its
  output and the response is done, one ``response.create``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import structlog

from parley.audio.frame import PCM16
from parley.providers.errors import ProviderUnavailable
from parley.providers.s2s.base import (
    AgentAudio,
    AgentTranscript,
    EngineError,
    ResponseDone,
    S2SEvent,
    S2SSetup,
    S2SUsage,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequest,
    UserTranscript,
    server_text,
)

log = structlog.get_logger("parley.providers.s2s.openai_realtime")

RATE = 24000
"""The Realtime API's PCM16 rate (``audio/pcm`` is 24 kHz mono, little-endian)."""
_AUDIO_DELTA = frozenset({"response.output_audio.delta", "response.audio.delta"})
_TRANSCRIPT_DELTA = frozenset({"response.output_audio_transcript.delta", "response.audio_transcript.delta"})
_BENIGN_ERRORS = frozenset({"response_cancel_not_active"})
"""Errors a race makes harmless: the server's own VAD cancelled the response a moment before we did."""
_STATUSES = frozenset({"completed", "cancelled", "failed", "incomplete"})


class OpenAIRealtimeEngine:
    """One engine per agent configuration (model, voice, VAD, key); ``connect`` per call."""

    name = "openai_realtime"
    input_rate = RATE
    output_rate = RATE

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str = "gpt-realtime",
        voice: str = "marin",
        turn_detection: str = "server_vad",
        vad_threshold: float = 0.5,
        silence_duration_ms: int = 500,
        prefix_padding_ms: int = 300,
        transcription_model: str = "gpt-4o-mini-transcribe",
        max_output_tokens: int = 1024,
        timeout_s: float = 10.0,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self._api_key = api_key
        self.voice = voice
        self.turn_detection = turn_detection
        self.vad_threshold = vad_threshold
        self.silence_duration_ms = silence_duration_ms
        self.prefix_padding_ms = prefix_padding_ms
        self.transcription_model = transcription_model
        self.max_output_tokens = max_output_tokens
        self.timeout_s = timeout_s

    def session_config(self, setup: S2SSetup, *, create_response: bool = True) -> dict[str, Any]:
        """The ``session`` object of ``session.update`` (GA shape)."""
        detection: dict[str, Any] = {
            "type": self.turn_detection,
            "create_response": create_response,
            "interrupt_response": setup.interruptible,
        }
        if self.turn_detection == "server_vad":
            detection |= {
                "threshold": self.vad_threshold,
                "silence_duration_ms": self.silence_duration_ms,
                "prefix_padding_ms": self.prefix_padding_ms,
            }
        transcription: dict[str, Any] = {"model": self.transcription_model}
        instructions = setup.instructions
        if setup.language:
            transcription["language"] = setup.language
            instructions += f"\n\nSpeak in the language with ISO 639-1 code '{setup.language}'."
        return {
            "type": "realtime",
            "model": self.model,
            "instructions": instructions,
            "output_modalities": ["audio"],
            "max_output_tokens": self.max_output_tokens,
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": RATE},
                    "transcription": transcription,
                    "turn_detection": detection,
                },
                "output": {"format": {"type": "audio/pcm", "rate": RATE}, "voice": self.voice},
            },
            "tools": [
                {"type": "function", "name": t.name, "description": t.description, "parameters": t.parameters}
                for t in setup.tools
            ],
            "tool_choice": "auto",
        }

    async def connect(self, setup: S2SSetup) -> OpenAIRealtimeConnection:
        """Open the socket and configure the session; ``ProviderUnavailable`` if either fails."""
        from openai import AsyncOpenAI, OpenAIError
        from websockets.exceptions import InvalidHandshake, WebSocketException

        if not self._api_key:
            raise ProviderUnavailable(
                "no OpenAI API key (PARLEY_OPENAI_API_KEY or api_key_secret)", provider=self.name
            )
        client = AsyncOpenAI(api_key=self._api_key, websocket_base_url=self.base_url, max_retries=0)
        manager = client.realtime.connect(model=self.model)
        try:
            async with asyncio.timeout(self.timeout_s):
                socket = await manager.enter()
        except InvalidHandshake as exc:  # a refused key (401/403), a 5xx, a 429: all mean "not here"
            status = getattr(getattr(exc, "response", None), "status_code", None)
            raise ProviderUnavailable(
                f"OpenAI Realtime refused the connection: {self.clean(str(exc))}",
                provider=self.name,
                status=status,
            ) from exc
        except (OSError, TimeoutError, WebSocketException, OpenAIError) as exc:
            raise ProviderUnavailable(
                f"OpenAI Realtime is unreachable: {self.clean(repr(exc))}", provider=self.name
            ) from exc
        connection = OpenAIRealtimeConnection(self, socket, setup)
        try:
            async with asyncio.timeout(self.timeout_s):
                await connection.open()
        except BaseException as exc:
            await connection.aclose()
            if isinstance(exc, ProviderUnavailable | asyncio.CancelledError):
                raise
            raise ProviderUnavailable(
                f"OpenAI Realtime session setup failed: {self.clean(repr(exc))}", provider=self.name
            ) from exc
        return connection

    @property
    def secrets(self) -> tuple[str | None, ...]:
        """What this engine sends that no error text may show."""
        return (self._api_key,)

    def clean(self, text: str) -> str:
        """Server text (or an exception quoting it), fit for an error: without the key, cut short."""
        return server_text(text, self.secrets)


class OpenAIRealtimeConnection:
    """One call on OpenAI Realtime (``parley.providers.s2s.base.S2SConnection``)."""

    speaks_first_message = False

    def __init__(self, engine: OpenAIRealtimeEngine, socket: Any, setup: S2SSetup) -> None:
        self._engine = engine
        self._socket = socket
        self._setup = setup
        self._early: list[dict[str, Any]] = []
        """Events read while waiting for ``session.updated``: delivered first by ``events``."""
        self._active: str | None = None
        """The response being generated (between ``response.created`` and ``response.done``)."""
        self._calls: dict[str, str] = {}
        """Function calls awaiting their output: call id → response id."""
        self._answered: dict[str, set[str]] = {}
        self._done: set[str] = set()
        """Responses that ended with calls still pending: answered once their outputs are in."""
        self._send_lock = asyncio.Lock()
        server_vad = engine.turn_detection == "server_vad"
        self._padding_ms = engine.prefix_padding_ms if server_vad else 0
        self._silence_ms = engine.silence_duration_ms if server_vad else 0
        self._closed = False

    # --- setup --------------------------------------------------------------------------------------

    async def open(self) -> None:
        await self._socket.session.update(session=self._engine.session_config(self._setup))
        while True:
            event = await self._recv()
            if event is None:
                raise ProviderUnavailable(
                    "OpenAI Realtime closed during session setup", provider=self._engine.name
                )
            kind = event.get("type")
            if kind == "session.updated":
                return
            if kind == "error":
                error = event.get("error") or {}
                raise ProviderUnavailable(
                    "OpenAI Realtime refused the session: "
                    + self._engine.clean(str(error.get("message", error))),
                    provider=self._engine.name,
                )
            if kind != "session.created":
                self._early.append(event)

    # --- what the session sends ---------------------------------------------------------------------

    async def send_audio(self, pcm: PCM16) -> None:
        data = base64.b64encode(np.asarray(pcm, dtype="<i2").tobytes()).decode("ascii")
        await self._send(lambda: self._socket.input_audio_buffer.append(audio=data))

    async def send_text(self, text: str) -> None:
        await self._cancel_active()
        await self._send(
            lambda: self._socket.conversation.item.create(
                item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}
            )
        )
        await self._send(lambda: self._socket.response.create())

    async def say(self, text: str) -> None:
        """Out-of-band words: one response whose instructions are to say exactly ``text``."""
        await self._cancel_active()
        instructions = f"Say exactly the following to the caller, word for word, and nothing else: {text}"
        await self._send(lambda: self._socket.response.create(response={"instructions": instructions}))

    async def add_note(self, text: str) -> None:
        await self._send(
            lambda: self._socket.conversation.item.create(
                item={"type": "message", "role": "system", "content": [{"type": "input_text", "text": text}]}
            )
        )

    async def interrupt(self, item_id: str | None, heard_ms: int) -> None:
        await self._cancel_active()
        if item_id:
            await self._send(
                lambda: self._socket.conversation.item.truncate(
                    item_id=item_id, content_index=0, audio_end_ms=max(0, int(heard_ms))
                )
            )

    async def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> None:
        response_id = self._calls.pop(call_id, None)
        await self._send(
            lambda: self._socket.conversation.item.create(
                item={"type": "function_call_output", "call_id": call_id, "output": output}
            )
        )
        if response_id is not None:
            self._answered.setdefault(response_id, set()).add(call_id)
            await self._maybe_continue(response_id)

    async def hold(self, on: bool) -> None:
        """While a person has the call the model hears (and transcribes) but starts no response."""
        config = self._engine.session_config(self._setup, create_response=not on)
        detection = config["audio"]["input"]["turn_detection"]
        update = {"type": "realtime", "audio": {"input": {"turn_detection": detection}}}
        await self._send(lambda: self._socket.session.update(session=update))
        if on:
            await self._cancel_active()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # closing a socket that is already gone is not news
            await self._socket.close()

    # --- what the provider says ---------------------------------------------------------------------

    async def events(self) -> AsyncIterator[S2SEvent]:
        while True:
            event = self._early.pop(0) if self._early else await self._recv()
            if event is None:
                return
            for mapped in self._map(event):
                yield mapped

    def _map(self, event: dict[str, Any]) -> list[S2SEvent]:
        kind = str(event.get("type", ""))
        if kind in _AUDIO_DELTA:
            pcm = np.frombuffer(base64.b64decode(event.get("delta", "")), dtype="<i2").astype(np.int16)
            return [AgentAudio(pcm, str(event.get("item_id", "")), str(event.get("response_id", "")))]
        if kind in _TRANSCRIPT_DELTA:
            return [
                AgentTranscript(
                    str(event.get("delta", "")),
                    str(event.get("item_id", "")),
                    str(event.get("response_id", "")),
                )
            ]
        if kind == "input_audio_buffer.speech_started":  # its position includes the prefix padding
            start = _int(event.get("audio_start_ms"))
            return [SpeechStarted(None if start is None else start + self._padding_ms)]
        if kind == "input_audio_buffer.speech_stopped":  # its position includes the closing silence
            end = _int(event.get("audio_end_ms"))
            return [SpeechStopped(None if end is None else max(0, end - self._silence_ms))]
        if kind == "conversation.item.input_audio_transcription.completed":
            return [UserTranscript(str(event.get("transcript", "")), str(event.get("item_id", "")))]
        if kind == "response.created":
            self._active = str((event.get("response") or {}).get("id", ""))
            return []
        if kind == "response.function_call_arguments.done":
            response_id = str(event.get("response_id", ""))
            call_id = str(event.get("call_id", ""))
            self._calls[call_id] = response_id
            return [
                ToolCallRequest(
                    call_id, str(event.get("name", "")), str(event.get("arguments", "")), response_id
                )
            ]
        if kind == "response.done":
            return [self._response_done(event.get("response") or {})]
        if kind == "error":
            error = event.get("error") or {}
            code = str(error.get("code") or error.get("type") or "")
            if code in _BENIGN_ERRORS:
                log.debug("openai realtime: benign error", code=code)
                return []
            return [EngineError(str(error.get("message", "")), code, secrets=self._engine.secrets)]
        return []

    def _response_done(self, response: dict[str, Any]) -> ResponseDone:
        response_id = str(response.get("id", ""))
        if self._active == response_id:
            self._active = None
        status = str(response.get("status", "completed"))
        usage = response.get("usage") or {}
        inputs = usage.get("input_token_details") or {}
        outputs = usage.get("output_token_details") or {}
        pending = [c for c, r in self._calls.items() if r == response_id]
        if status == "completed" and (pending or response_id in self._answered):
            self._done.add(response_id)
            self._spawn_continue(response_id)
        return ResponseDone(
            response_id,
            status if status in _STATUSES else "failed",  # type: ignore[arg-type]
            S2SUsage(
                input_tokens=int(usage.get("input_tokens") or 0),
                output_tokens=int(usage.get("output_tokens") or 0),
                input_audio_tokens=int(inputs.get("audio_tokens") or 0),
                output_audio_tokens=int(outputs.get("audio_tokens") or 0),
                cached_tokens=int(inputs.get("cached_tokens") or 0),
            ),
        )

    def _spawn_continue(self, response_id: str) -> None:
        task = asyncio.ensure_future(self._maybe_continue(response_id))
        task.add_done_callback(_log_failure)

    async def _maybe_continue(self, response_id: str) -> None:
        """Every call of a finished response has its output: the model answers with them."""
        if response_id not in self._done or any(r == response_id for r in self._calls.values()):
            return
        self._done.discard(response_id)
        self._answered.pop(response_id, None)
        await self._send(lambda: self._socket.response.create())

    # --- plumbing -----------------------------------------------------------------------------------

    async def _cancel_active(self) -> None:
        if self._active is not None:
            self._active = None
            await self._send(lambda: self._socket.response.cancel())

    async def _send(self, sending: Callable[[], Awaitable[None]]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async with self._send_lock:
                await sending()
        except ConnectionClosed as exc:
            raise ProviderUnavailable(
                f"OpenAI Realtime connection closed: {self._engine.clean(str(exc))}",
                provider=self._engine.name,
            ) from exc

    async def _recv(self) -> dict[str, Any] | None:
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        try:
            raw = await self._socket.recv_bytes()
        except ConnectionClosedOK:
            return None
        except ConnectionClosed as exc:
            raise ProviderUnavailable(
                f"OpenAI Realtime connection lost: {self._engine.clean(str(exc))}",
                provider=self._engine.name,
            ) from exc
        try:
            event = json.loads(raw)
        except ValueError:
            log.warning("openai realtime: a message that is not JSON", size=len(raw))
            return {}
        return event if isinstance(event, dict) else {}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("openai realtime: continuing after tool results failed", error=repr(task.exception()))
