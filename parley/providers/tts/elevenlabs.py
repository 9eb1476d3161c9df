"""ElevenLabs speech synthesis over its input-streaming WebSocket, with character alignment.

Why not the official SDK: ``elevenlabs``' ``text_to_speech.convert_realtime`` drives the blocking
``websockets.sync`` client (it would stall the event loop every call shares) and yields bare audio,
dropping the alignment. So this speaks the documented protocol of
``wss://api.elevenlabs.io/v1/text-to-speech/{voice_id}/stream-input`` with ``websockets``' asyncio client;
the message shapes are the SDK's own types (``InitializeConnection``, ``SendText``, ``CloseConnection``,
``AudioOutput`` with ``alignment``, ``FinalOutput``).

One connection per clause: the opening message (a single space, voice settings, the chunk schedule), the
clause with ``flush``, then the empty text that ends the input. Audio arrives as base64 PCM16 with the
timing of each character relative to its own chunk; those are re-based onto the clause's audio, so a
barge-in keeps exactly the characters that had been played (``AlignedSynthesizer``). Closing the stream
early (a barge-in cancels the reply) closes the socket at once, which stops the generation.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncGenerator, Mapping, Sequence
from contextlib import aclosing
from typing import Any, Literal
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import numpy as np
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidStatus,
)

from parley.audio.frame import PCM16
from parley.providers.errors import ProviderRejected, ProviderUnavailable
from parley.providers.tts.base import AlignedChunk, CharTiming
from parley.redaction import excerpt

log = structlog.get_logger("parley.providers.tts.elevenlabs")

PROVIDER = "elevenlabs"
SampleRate = Literal[16000, 22050, 24000]
DEFAULT_BASE_URL = "https://api.elevenlabs.io"
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""A generous bound on one message (a long clause's audio chunk at 24 kHz, base64, is well below)."""
REJECTED_ERRORS = frozenset({"invalid_input_message", "invalid_request", "text_too_long"})
"""In-band errors about the request itself: another voice given the same text would not do better."""
UNAVAILABLE_STATUSES = frozenset({401, 402, 403, 404, 408, 429})
"""Handshake refusals that say this provider will not serve us now (key, quota, rate, unknown voice);
any 5xx too. Other 4xx are the request's fault."""


class ElevenLabsSynthesizer:
    """One ElevenLabs voice at one PCM rate; shared by every session that asks for the same options."""

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        voice_id: str,
        *,
        model: str = "eleven_flash_v2_5",
        sample_rate: SampleRate = 16000,
        base_url: str = DEFAULT_BASE_URL,
        voice_settings: Mapping[str, float] | None = None,
        language_code: str | None = None,
        chunk_length_schedule: Sequence[int] = (50,),
        timeout_s: float = 10.0,
    ) -> None:
        if not api_key:
            raise ValueError("an ElevenLabs API key is needed")
        self.sample_rate: int = sample_rate
        self.voice_id = voice_id
        self.model = model
        self.timeout_s = timeout_s
        self._api_key = api_key
        self._voice_settings = dict(voice_settings or {})
        self._schedule = list(chunk_length_schedule)
        query = {"model_id": model, "output_format": f"pcm_{sample_rate}", "sync_alignment": "true"}
        if language_code:
            query["language_code"] = language_code
        self.url = _stream_input_url(base_url, voice_id, query)

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        async with aclosing(self.synthesize_aligned(text)) as pieces:  # closed early: the socket too
            async for piece in pieces:
                yield piece.pcm

    async def synthesize_aligned(self, text: str) -> AsyncGenerator[AlignedChunk, None]:
        """Stream one clause's audio, each chunk with its characters' timings from the clause's start."""
        text = text.strip()
        if not text:
            return
        try:
            async with connect(
                self.url,
                additional_headers={"xi-api-key": self._api_key},
                open_timeout=self.timeout_s,
                close_timeout=2,
                max_size=MAX_MESSAGE_BYTES,
                compression=None,
                proxy=None,
            ) as socket:
                await self._send_text(socket, text)
                async for piece in self._receive(socket):
                    yield piece
        except InvalidStatus as exc:
            status = exc.response.status_code
            detail = _excerpt(exc.response.body, self._api_key)
            if status in UNAVAILABLE_STATUSES or status >= 500:
                raise ProviderUnavailable(
                    f"ElevenLabs refused the connection (HTTP {status}): {detail}",
                    provider=PROVIDER,
                    status=status,
                ) from exc
            raise ProviderRejected(
                f"ElevenLabs refused the request (HTTP {status}): {detail}", provider=PROVIDER, status=status
            ) from exc
        except (InvalidHandshake, OSError, TimeoutError) as exc:
            raise ProviderUnavailable(f"ElevenLabs is unreachable: {exc!r}", provider=PROVIDER) from exc

    async def warm_up(self) -> None:
        """Nothing to load; the first clause (the agent's greeting, warmed by the phrase cache) connects."""
        return None

    async def _send_text(self, socket: ClientConnection, text: str) -> None:
        opening: dict[str, Any] = {
            "text": " ",
            "generation_config": {"chunk_length_schedule": self._schedule},
        }
        if self._voice_settings:
            opening["voice_settings"] = self._voice_settings
        try:
            await socket.send(json.dumps(opening))
            # The text should end with a space (``SendText``); ``flush`` generates it now, whatever its
            # length.
            await socket.send(json.dumps({"text": text + " ", "flush": True}))
            await socket.send(json.dumps({"text": ""}))  # ``CloseConnection``: no more input
        except ConnectionClosed:
            return  # refused at once: the error it sent before closing is read next, and raised there

    async def _receive(self, socket: ClientConnection) -> AsyncGenerator[AlignedChunk, None]:
        samples = 0
        odd = b""
        while True:
            try:
                raw = await asyncio.wait_for(socket.recv(), self.timeout_s)
            except ConnectionClosedOK:
                return  # closed normally after the last audio
            except ConnectionClosed as exc:
                reason = (
                    _excerpt(exc.rcvd.reason, self._api_key) if exc.rcvd is not None else "no close frame"
                )
                code = exc.rcvd.code if exc.rcvd is not None else None
                raise ProviderUnavailable(
                    f"ElevenLabs closed the stream (code {code}): {reason}", provider=PROVIDER
                ) from exc
            except TimeoutError as exc:
                raise ProviderUnavailable(
                    f"ElevenLabs sent nothing for {self.timeout_s:g} s", provider=PROVIDER
                ) from exc
            message = _parse(raw)
            audio = message.get("audio")
            if isinstance(audio, str) and audio:
                data = odd + _decode(audio)
                usable = len(data) // 2 * 2
                odd = data[usable:]
                pcm = np.frombuffer(data[:usable], dtype="<i2").astype(np.int16)
                chars = _timings(message.get("alignment"), samples / self.sample_rate)
                samples += len(pcm)
                yield AlignedChunk(pcm, chars)
            elif "message" in message or "error" in message:
                _raise_for(message, self._api_key)
            if message.get("isFinal"):
                return


def _stream_input_url(base_url: str, voice_id: str, query: Mapping[str, str]) -> str:
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path.rstrip('/')}/v1/text-to-speech/{quote(voice_id, safe='')}/stream-input"
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        message = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ProviderUnavailable(
            f"ElevenLabs sent a message that is not JSON: {exc}", provider=PROVIDER
        ) from exc
    if not isinstance(message, dict):
        raise ProviderUnavailable("ElevenLabs sent a message that is not a JSON object", provider=PROVIDER)
    return message


def _decode(audio: str) -> bytes:
    try:
        return base64.b64decode(audio, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProviderUnavailable(
            f"ElevenLabs sent audio that is not base64: {exc}", provider=PROVIDER
        ) from exc


def _timings(alignment: object, offset_s: float) -> tuple[CharTiming, ...]:
    """A chunk's ``alignment`` (times relative to the chunk) as timings from the clause's start. The
    ``normalizedAlignment`` is not used: it times the normalized text ("five dollars" for "$5"), whose
    characters are not the ones the agent's context holds."""
    if not isinstance(alignment, dict):
        return ()
    chars = alignment.get("chars")
    starts = alignment.get("charStartTimesMs")
    durations = alignment.get("charDurationsMs")
    if not (isinstance(chars, list) and isinstance(starts, list) and isinstance(durations, list)):
        return ()
    if not len(chars) == len(starts) == len(durations):
        log.warning(
            "elevenlabs_alignment_mismatch", chars=len(chars), starts=len(starts), durations=len(durations)
        )
        return ()
    timings: list[CharTiming] = []
    for char, start_ms, duration_ms in zip(chars, starts, durations, strict=True):
        if (
            not isinstance(char, str)
            or not isinstance(start_ms, int | float)
            or not isinstance(duration_ms, int | float)
        ):
            return ()
        start = offset_s + start_ms / 1000
        timings.append(CharTiming(char, start, start + duration_ms / 1000))
    return tuple(timings)


def _raise_for(message: Mapping[str, Any], api_key: str) -> None:
    """An in-band error (``{"message", "error", "code"}``, then the socket closes with 1008)."""
    error = str(message.get("error") or "error")
    text = _excerpt(str(message.get("message") or ""), api_key)
    if error in REJECTED_ERRORS:
        raise ProviderRejected(f"ElevenLabs rejected the request ({error}): {text}", provider=PROVIDER)
    raise ProviderUnavailable(f"ElevenLabs refused to synthesize ({error}): {text}", provider=PROVIDER)


def _excerpt(body: bytes | bytearray | str | None, api_key: str, limit: int = 300) -> str:
    """The start of what ElevenLabs said, redacted before it is cut: a key cut first would no longer
    match and its first characters would be shown."""
    if body is None:
        return ""
    text = body if isinstance(body, str) else bytes(body).decode("utf-8", "replace")
    return excerpt(text, limit, [api_key])
