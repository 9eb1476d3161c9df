"""A local stand-in for ElevenLabs' input-streaming text-to-speech WebSocket, for the adapter's tests.

It speaks the documented protocol of ``/v1/text-to-speech/{voice_id}/stream-input`` and checks what the
client sends. Where each shape comes from:

- the route, the ``model_id`` and ``output_format`` query parameters and the ``xi-api-key`` header: the
  API reference page "WebSocket" (https://elevenlabs.io/docs/api-reference/websocket) and the official
  SDK's ``elevenlabs/realtime_tts.py`` (``build_ws_url(..., ["v1", "text-to-speech", voice_id,
  "stream-input"], {"model_id", "output_format"})``);
- client messages: the SDK's ``types/initialize_connection.py`` (first message ``text: " "``,
  ``voice_settings``, ``generation_config.chunk_length_schedule`` (each 50–500), ``xi-api-key`` only when
  not in the header), ``types/send_text.py`` (``text`` ending in a space, ``try_trigger_generation``,
  ``flush``) and ``types/close_connection.py`` (``text: ""`` ends the input);
- server messages: ``types/audio_output.py`` (``audio`` base64 in the requested ``output_format``, with
  ``alignment`` / ``normalizedAlignment``: ``chars``, ``charStartTimesMs``, ``charDurationsMs``, times
  "relative to the returned chunk", per ``types/alignment.py``) and ``types/final_output.py``
  (``isFinal: true``, audio null);
- errors: an in-band ``{"message", "error", "code": 1008}`` then a 1008 close, as reported in
  elevenlabs/elevenlabs-python#167 (``invalid_input_message``) and handled by the SDK ("if 'message' in
  data: raise ApiError"); ``quota_exceeded`` as in elevenlabs/packages#354; ``voice_not_found`` as in the
  REST API's ``detail.status`` (elevenlabs/elevenlabs-docs#1317). A wrong key is refused at the handshake
  with 401 and the REST API's error body.

The "voice" is a quiet tone, ``ms_per_char`` per character of the text received, so a test knows to the
sample which character each piece of audio carries.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
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

PCM_FORMATS = {"pcm_16000": 16000, "pcm_22050": 22050, "pcm_24000": 24000}
MODELS = {
    "eleven_flash_v2_5",
    "eleven_turbo_v2_5",
    "eleven_multilingual_v2",
    "eleven_flash_v2",
    "eleven_turbo_v2",
}


@dataclass
class Connection:
    """What one client connection sent and how it ended."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    messages: list[dict[str, Any]] = field(default_factory=list)
    chunks_sent: int = 0
    final_sent: bool = False
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    closed_by_client_early: bool = False
    """The client went away before the final message: generation was stopped."""


@dataclass
class LocalElevenLabs:
    api_key: str = "test-eleven-key"
    voices: set[str] = field(default_factory=lambda: {"21m00Tcm4TlvDq8ikWAM", "JBFqnCBsd6RMkjVDRZzb"})
    ms_per_char: float = 40.0
    chars_per_chunk: int = 5
    chunk_delay_s: float = 0.0
    """Time to "generate" each chunk (a real model runs faster than real time, but not instantly)."""
    quota_exceeded: bool = False
    connections: list[Connection] = field(default_factory=list)
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""
    _server: Server | None = None

    async def __aenter__(self) -> LocalElevenLabs:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_handshake, compression=None
        )
        port = self._server.sockets[0].getsockname()[1] if self._server.sockets else 0
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    # --- handshake: route, query and key --------------------------------------------------------------

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        segments = parts.path.strip("/").split("/")
        if len(segments) != 4 or segments[:2] != ["v1", "text-to-speech"] or segments[3] != "stream-input":
            return _json_response(connection, HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        if request.headers.get("xi-api-key") != self.api_key:
            return _json_response(
                connection,
                HTTPStatus.UNAUTHORIZED,
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
            )
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if query.get("model_id") not in MODELS or query.get("output_format") not in PCM_FORMATS:
            return _json_response(
                connection,
                HTTPStatus.BAD_REQUEST,
                {"detail": {"status": "invalid_request", "message": f"bad query {parts.query}"}},
            )
        return None

    # --- the conversation -----------------------------------------------------------------------------

    async def _handle(self, socket: ServerConnection) -> None:
        request = socket.request
        assert request is not None
        parts = urlsplit(request.path)
        record = Connection(
            parts.path,
            {k: v[-1] for k, v in parse_qs(parts.query).items()},
            {k.lower(): v for k, v in _items(request.headers)},
        )
        self.connections.append(record)
        self.connected.set()
        rate = PCM_FORMATS[record.query["output_format"]]
        voice_id = parts.path.strip("/").split("/")[2]
        try:
            await self._converse(socket, record, rate, voice_id)
        except ConnectionClosed:
            record.closed_by_client_early = not record.final_sent
        finally:
            record.closed.set()

    async def _converse(self, socket: ServerConnection, record: Connection, rate: int, voice_id: str) -> None:
        first = await self._receive(socket, record)
        if first is None or first.get("text") != " " or not _valid_opening(first):
            await _refuse(socket, "invalid_input_message", "The first message must be the opening one.")
            return
        if voice_id not in self.voices:
            await _refuse(socket, "voice_not_found", f"A voice with the voice_id {voice_id} was not found.")
            return
        buffered = ""
        while True:
            message = await self._receive(socket, record)
            if message is None or not isinstance(message.get("text"), str):
                await _refuse(socket, "invalid_input_message", "Could not parse input message.")
                return
            if self.quota_exceeded:
                await _refuse(socket, "quota_exceeded", "This request exceeds your quota.")
                return
            text = message["text"]
            if text == "":  # end of input: say what is left, then the final message
                await self._speak(socket, record, buffered, rate)
                await socket.send(json.dumps({"audio": None, "isFinal": True}))
                record.final_sent = True
                await socket.close()
                return
            buffered += text
            if message.get("flush") or message.get("try_trigger_generation"):
                await self._speak(socket, record, buffered, rate)
                buffered = ""

    async def _receive(self, socket: ServerConnection, record: Connection) -> dict[str, Any] | None:
        raw = await socket.recv()
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            return None
        if not isinstance(message, dict):
            return None
        record.messages.append(message)
        return message

    async def _speak(self, socket: ServerConnection, record: Connection, text: str, rate: int) -> None:
        samples_per_char = round(rate * self.ms_per_char / 1000)
        for start in range(0, len(text), self.chars_per_chunk):
            chars = list(text[start : start + self.chars_per_chunk])
            with contextlib.suppress(TimeoutError):  # "generating"; a client that leaves ends it at once
                await asyncio.wait_for(socket.wait_closed(), self.chunk_delay_s)
            pcm = _tone(len(chars) * samples_per_char, rate)
            # Times are relative to this chunk's own audio (types/alignment.py).
            alignment = {
                "chars": chars,
                "charStartTimesMs": [round(i * self.ms_per_char) for i in range(len(chars))],
                "charDurationsMs": [round(self.ms_per_char)] * len(chars),
            }
            await socket.send(
                json.dumps(
                    {
                        "audio": base64.b64encode(pcm.astype("<i2").tobytes()).decode(),
                        "isFinal": None,
                        "normalizedAlignment": alignment,
                        "alignment": alignment,
                    }
                )
            )
            record.chunks_sent += 1


def _valid_opening(message: dict[str, Any]) -> bool:
    schedule = message.get("generation_config", {}).get("chunk_length_schedule", [120])
    settings = message.get("voice_settings") or {}
    return (
        isinstance(schedule, list)
        and all(isinstance(n, int | float) and 50 <= n <= 500 for n in schedule)
        and all(
            k in {"stability", "similarity_boost", "style", "use_speaker_boost", "speed"} for k in settings
        )
    )


async def _refuse(socket: ServerConnection, error: str, message: str) -> None:
    await socket.send(json.dumps({"message": message, "error": error, "code": 1008}))
    await socket.close(1008, message[:100])


def _json_response(connection: ServerConnection, status: HTTPStatus, body: dict[str, Any]) -> Response:
    response = connection.respond(status, json.dumps(body))
    response.headers["Content-Type"] = "application/json"
    return response


def _items(headers: Headers) -> list[tuple[str, str]]:
    return list(headers.raw_items())


def _tone(samples: int, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(samples) / rate
    return np.round(0.1 * np.sin(2 * np.pi * 330 * t) * 32767).astype(np.int16)
