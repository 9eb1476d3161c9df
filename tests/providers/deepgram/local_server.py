"""A loopback stand-in that speaks Deepgram's documented protocols, for the adapters' tests.

It is not Deepgram and recognises nothing: it follows the message shapes and rules of the documentation
and checks what a client sends. Where each shape comes from:

- Live transcription, ``GET /v1/listen`` upgraded to a WebSocket
  (https://developers.deepgram.com/reference/speech-to-text/listen-streaming, and the official SDK's
  ``deepgram/listen/v1/types``: ``ListenV1Results``, ``ListenV1Metadata``, ``ListenV1SpeechStarted``,
  ``ListenV1UtteranceEnd``, ``ListenV1Error``):
  * ``Authorization: Token <key>``; a refused handshake is an HTTP 4xx with a ``dg-error`` header and a
    JSON body ``{"err_code", "err_msg", "request_id"}`` (docs: "STT Troubleshooting WebSocket, NET, and
    DATA Errors"; "Errors");
  * binary frames are audio in the declared ``encoding``/``sample_rate``; audio that cannot be decoded
    closes the socket with 1008 ``DATA-0000``; no frame at all for the idle timeout (10 s at Deepgram)
    closes it with 1011 ``NET-0001``; ``{"type": "KeepAlive"}`` counts as a frame (docs: "KeepAlive");
  * ``Results`` with ``channel.alternatives[0].transcript/confidence/words``, ``start``/``duration`` in
    seconds from the start of the socket, ``is_final``, ``speech_final`` (endpointing), ``from_finalize``
    (docs: "Configure Endpointing and Interim Results", "Finalize": "You may receive a response with the
    from_finalize attribute set to true … not guaranteed if there is no significant amount of audio");
  * ``SpeechStarted`` (``vad_events``) and ``UtteranceEnd`` (``utterance_end_ms``, which needs
    ``interim_results``); ``CloseStream`` flushes, sends ``Metadata`` and closes with 1000;
  * ``keyterm`` is Nova-3's, ``keywords`` older models' (docs: "Keyterm Prompting", "Keywords");
  * with ``language=multi`` each alternative carries ``languages``, the detected BCP-47 tags (SDK
    ``ListenV1ResultsChannelAlternativesItem.languages``; docs: "Multilingual Codeswitching");
  * a text message it cannot parse is answered with ``{"type": "Error", "variant": "SchemaError"}``.
- Aura, ``GET /v1/speak`` upgraded (https://developers.deepgram.com/reference/text-to-speech/speak-streaming,
  SDK ``deepgram/speak/v1/types``): ``Metadata`` on open, ``Speak`` adds text, ``Flush`` makes the audio
  (binary frames) then ``{"type": "Flushed", "sequence_id"}``, ``Clear`` drops it and answers
  ``{"type": "Cleared", "sequence_id"}``, ``Close`` closes; over 20 flushes a minute get a ``Warning``
  (docs: "Flush", "Clear").
- Aura REST, ``POST /v1/speak?model&encoding&sample_rate&container`` with ``{"text"}`` streams the audio
  (docs: "Text to Speech REST", "Media Output Settings").

What it "hears" is scripted: every final result with speech in it says the next line of ``lines`` (shared
by all sockets, so a conversation's turns come in order); interim results reveal one more word of that
line per ``seconds_per_word`` of voiced audio. Voiced means a 10 ms frame above ``voiced_dbfs``, which is
also what its endpointing and ``vad_events`` go by. What it "says" is a tone as long as the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.websockets import WebSocket

from parley.audio.codecs import alaw_encode, ulaw_decode, ulaw_encode
from parley.audio.frame import PCM16
from parley.server.lifecycle import bound_port

LISTEN_MODELS = frozenset(
    {
        "nova-3",
        "nova-3-general",
        "nova-3-medical",
        "nova-2",
        "nova-2-general",
        "nova-2-meeting",
        "nova-2-finance",
        "nova-2-conversationalai",
        "nova-2-voicemail",
        "nova-2-video",
        "nova-2-medical",
        "nova-2-drivethru",
        "nova-2-automotive",
    }
)
SPEAK_RATES = frozenset({8000, 16000, 24000, 32000, 48000})
FLUSHES_PER_MINUTE = 20


class Refused(Exception):
    """A handshake or request Deepgram would refuse: its status and reason."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class ListenCall:
    """One ``/v1/listen`` socket as the server saw it."""

    params: dict[str, list[str]]
    headers: dict[str, str]
    received: list[str] = field(default_factory=list)
    """In order: ``audio`` for each binary frame, else the JSON message's ``type``."""
    audio_bytes: int = 0
    sent: list[dict[str, Any]] = field(default_factory=list)
    close: tuple[int, str] | None = None

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


@dataclass
class SpeakCall:
    """One ``/v1/speak`` socket: the JSON messages it got, in order."""

    params: dict[str, list[str]]
    headers: dict[str, str]
    received: list[dict[str, Any]] = field(default_factory=list)
    audio_frames_sent: int = 0


@dataclass
class RestCall:
    params: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


def _params(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for name, value in pairs:
        found.setdefault(name, []).append(value)
    return found


def _bool(params: dict[str, list[str]], name: str, default: bool) -> bool:
    value = params.get(name, [None])[0]
    if value is None:
        return default
    if value not in ("true", "false"):
        raise Refused(400, "INVALID_QUERY_PARAMETER", f"{name} must be true or false, got {value!r}")
    return value == "true"


def _int(params: dict[str, list[str]], name: str) -> int | None:
    value = params.get(name, [None])[0]
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise Refused(400, "INVALID_QUERY_PARAMETER", f"{name} must be an integer, got {value!r}") from None


class DeepgramLocal:
    """Serve on 127.0.0.1 (``async with DeepgramLocal(...) as dg: dg.url``)."""

    def __init__(
        self,
        *,
        api_key: str = "dg-local-key",
        lines: Sequence[str] = (),
        seconds_per_word: float = 0.15,
        voiced_dbfs: float = -40.0,
        idle_timeout_s: float = 10.0,
    ) -> None:
        self.api_key = api_key
        self.lines: deque[str] = deque(lines)
        self.seconds_per_word = seconds_per_word
        self.voiced_dbfs = voiced_dbfs
        self.idle_timeout_s = idle_timeout_s
        self.listen_calls: list[ListenCall] = []
        self.speak_calls: list[SpeakCall] = []
        self.rest_calls: list[RestCall] = []
        self.refusals: list[tuple[str, int]] = []
        # Knobs a test turns:
        self.answer_finalize = True
        """False: Finalize gets no answer (allowed by the docs when little audio is buffered)."""
        self.drop_after_audio_s: float | None = None
        """Close the next ``drops`` listen sockets with 1011 NET-0000 once they got this much audio."""
        self.drops = 0
        self.undecodable = False
        self.detected_language = "en"
        """What ``language=multi`` results report in ``languages`` (Nova-3 code-switching)."""
        """Treat every audio frame as undecodable: close with 1008 DATA-0000, as for a wrong encoding."""
        self.speak_ms_per_char = 20.0
        self.speak_chunk_ms = 20.0
        self.speak_chunk_delay_s = 0.0
        self.speak_silent = False
        """Take Flush and say nothing (a stalled synthesis)."""
        self.close_after_flushed = False
        """Close each speak socket (1000) right after its first Flushed, as an idle timeout would."""
        self.changed = asyncio.Event()
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> DeepgramLocal:
        server = _Quiet(
            uvicorn.Config(
                self, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="websockets-sansio"
            )
        )
        self._server = server
        self._task = asyncio.create_task(server.serve())
        while not server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        self.url = f"http://127.0.0.1:{bound_port(server)}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None and self._task is not None
        self._server.should_exit = True
        await asyncio.wait_for(self._task, 10)

    async def until(self, condition: Callable[[], bool], within_s: float = 5.0) -> None:
        """Until ``condition()`` holds, re-checked at every message the server handles."""
        async with asyncio.timeout(within_s):
            while not condition():
                self.changed.clear()
                await self.changed.wait()

    def _note(self) -> None:
        self.changed.set()

    # --- ASGI ----------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            socket = WebSocket(scope, receive, send)
            if scope["path"] == "/v1/listen":
                await self._listen(socket)
            elif scope["path"] == "/v1/speak":
                await self._speak(socket)
            else:
                await socket.send_denial_response(self._refusal(Refused(404, "NOT_FOUND", "No such path.")))
        elif scope["type"] == "http":
            request = Request(scope, receive)
            if scope["path"] == "/v1/speak" and request.method == "POST":
                response = await self._speak_rest(request)
            else:
                response = self._refusal(Refused(404, "NOT_FOUND", "No such path."))
            await response(scope, receive, send)

    def _check_key(self, headers: dict[str, str]) -> None:
        if headers.get("authorization") != f"Token {self.api_key}":
            raise Refused(401, "INVALID_AUTH", "Invalid credentials.")

    def _refusal(self, refused: Refused) -> Response:
        request_id = str(uuid.uuid4())
        return JSONResponse(
            {"err_code": refused.code, "err_msg": refused.message, "request_id": request_id},
            status_code=refused.status,
            headers={"dg-error": refused.message, "dg-request-id": request_id},
        )

    # --- /v1/listen ----------------------------------------------------------------------------

    def _listen_settings(self, params: dict[str, list[str]]) -> _ListenSettings:
        model = params.get("model", ["base"])[0]
        if model not in LISTEN_MODELS:
            raise Refused(400, "Bad Request", "No such model/language/tier combination found.")
        encoding = params.get("encoding", [None])[0]
        if encoding not in ("linear16", "mulaw"):
            raise Refused(
                400, "Bad Request", f"encoding {encoding!r} is not a raw encoding this server takes"
            )
        rate = _int(params, "sample_rate")
        if rate is None:
            raise Refused(400, "Bad Request", "sample_rate is required with a raw encoding")
        if _int(params, "channels") not in (None, 1):
            raise Refused(400, "Bad Request", "only mono audio here")
        interim = _bool(params, "interim_results", False)
        endpointing_raw = params.get("endpointing", ["10"])[0]
        endpointing = None if endpointing_raw == "false" else _int(params, "endpointing")
        utterance_end = _int(params, "utterance_end_ms")
        if utterance_end is not None and not interim:
            raise Refused(400, "Bad Request", "utterance_end_ms requires interim_results=true")
        nova3 = model.startswith("nova-3")
        if "keyterm" in params and not nova3:
            raise Refused(400, "Bad Request", "Keyterm Prompting is only available with Nova-3.")
        if "keywords" in params and nova3:
            raise Refused(400, "Bad Request", "Keywords are not supported with Nova-3; use keyterm.")
        for name in ("punctuate", "smart_format"):
            _bool(params, name, False)
        return _ListenSettings(
            model=model,
            mulaw=encoding == "mulaw",
            rate=rate,
            interim=interim,
            endpointing_ms=endpointing,
            utterance_end_ms=utterance_end,
            vad_events=_bool(params, "vad_events", False),
            multi=params.get("language", ["en"])[0] == "multi",
        )

    async def _listen(self, socket: WebSocket) -> None:
        params = _params(socket.query_params.multi_items())
        headers = {k.lower(): v for k, v in socket.headers.items()}
        try:
            self._check_key(headers)
            settings = self._listen_settings(params)
        except Refused as refused:
            self.refusals.append(("listen", refused.status))
            self._note()
            await socket.send_denial_response(self._refusal(refused))
            return
        call = ListenCall(params, headers)
        self.listen_calls.append(call)
        await socket.accept()
        ear = _Ear(self, settings, call, socket)
        try:
            await ear.serve()
        finally:
            self._note()

    # --- /v1/speak (socket) --------------------------------------------------------------------

    def _speak_settings(self, params: dict[str, list[str]], *, rest: bool) -> tuple[str, str, int]:
        model = params.get("model", ["aura-asteria-en"])[0]
        if not model.startswith("aura-"):
            raise Refused(400, "INVALID_QUERY_PARAMETER", f"No such model: {model!r}")
        encoding = params.get("encoding", ["linear16"])[0]
        if encoding not in ("linear16", "mulaw", "alaw"):
            raise Refused(400, "INVALID_QUERY_PARAMETER", f"encoding {encoding!r} is not streamable")
        rate = _int(params, "sample_rate") or 24000
        if rate not in SPEAK_RATES:
            raise Refused(400, "INVALID_QUERY_PARAMETER", f"sample_rate {rate} is not offered")
        if rest and params.get("container", ["wav"])[0] != "none":
            raise Refused(400, "INVALID_QUERY_PARAMETER", "this server streams container=none only")
        return model, encoding, rate

    async def _speak(self, socket: WebSocket) -> None:
        params = _params(socket.query_params.multi_items())
        headers = {k.lower(): v for k, v in socket.headers.items()}
        try:
            self._check_key(headers)
            model, encoding, rate = self._speak_settings(params, rest=False)
        except Refused as refused:
            self.refusals.append(("speak", refused.status))
            self._note()
            await socket.send_denial_response(self._refusal(refused))
            return
        call = SpeakCall(params, headers)
        self.speak_calls.append(call)
        await socket.accept()
        mouth = _Mouth(self, call, socket, model, encoding, rate)
        try:
            await mouth.serve()
        finally:
            self._note()

    # --- /v1/speak (REST) ----------------------------------------------------------------------

    async def _speak_rest(self, request: Request) -> Response:
        params = _params(request.query_params.multi_items())
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            self._check_key(headers)
            _model, encoding, rate = self._speak_settings(params, rest=True)
            body = json.loads(await request.body())
            text = body.get("text") if isinstance(body, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise Refused(400, "Bad Request", "text is required")
        except Refused as refused:
            self.refusals.append(("rest", refused.status))
            self._note()
            return self._refusal(refused)
        self.rest_calls.append(RestCall(params, headers, body))
        self._note()
        audio = encode_audio(self.tone_for(text, rate), encoding)
        step = int(rate * self.speak_chunk_ms / 1000) * 2 + 1  # odd: 16-bit samples straddle chunks

        async def body_chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(audio), step):
                yield audio[start : start + step]

        return StreamingResponse(body_chunks(), media_type="application/octet-stream")

    # --- what it says --------------------------------------------------------------------------

    def samples_for(self, text: str, rate: int) -> int:
        """How many samples the tone for ``text`` lasts (tests check the audio against it)."""
        return round(len(text.strip()) * self.speak_ms_per_char / 1000 * rate)

    def tone_for(self, text: str, rate: int) -> PCM16:
        t = np.arange(self.samples_for(text, rate)) / rate
        return np.round(0.2 * np.sin(2 * np.pi * 330 * t) * 32767).astype(np.int16)


def encode_audio(pcm: PCM16, encoding: str) -> bytes:
    if encoding == "mulaw":
        return ulaw_encode(pcm)
    if encoding == "alaw":
        return alaw_encode(pcm)
    return pcm.astype("<i2").tobytes()


@dataclass(frozen=True, slots=True)
class _ListenSettings:
    model: str
    mulaw: bool
    rate: int
    interim: bool
    endpointing_ms: int | None
    utterance_end_ms: int | None
    vad_events: bool
    multi: bool


class _Ear:
    """One listen socket's state: the audio clock, the segment under way, and what to answer."""

    def __init__(self, server: DeepgramLocal, settings: _ListenSettings, call: ListenCall, socket: WebSocket):
        self.server = server
        self.settings = settings
        self.call = call
        self.socket = socket
        self.request_id = str(uuid.uuid4())
        self.clock = 0.0
        self.segment_start = 0.0
        self.voiced = 0.0
        self.voice_end = 0.0
        self.silence = 0.0
        self.shown_words = 0
        self.speech_started = False
        self.last_word_end: float | None = None
        self.utterance_end_sent = True
        self.frame = settings.rate // 100

    async def serve(self) -> None:
        drop_at = None
        if self.server.drops > 0 and self.server.drop_after_audio_s is not None:
            self.server.drops -= 1
            drop_at = self.server.drop_after_audio_s
        while True:
            try:
                async with asyncio.timeout(self.server.idle_timeout_s):
                    message = await self.socket.receive()
            except TimeoutError:
                await self.close(1011, "NET-0001")
                return
            if message["type"] == "websocket.disconnect":
                self.call.close = (int(message.get("code", 1000)), "client went away")
                return
            data = message.get("bytes")
            if data is not None:
                self.call.received.append("audio")
                self.call.audio_bytes += len(data)
                self.server._note()
                if not await self.hear(data):
                    return
                if drop_at is not None and self.clock >= drop_at:
                    await self.close(1011, "NET-0000")
                    return
                continue
            text = message.get("text") or ""
            try:
                control = json.loads(text)
                kind = control["type"]
            except (ValueError, KeyError, TypeError):
                self.call.received.append("?")
                await self.send(
                    {
                        "type": "Error",
                        "variant": "SchemaError",
                        "description": "could not parse the client message",
                        "message": text[:200],
                    }
                )
                continue
            self.call.received.append(str(kind))
            self.server._note()
            if kind == "KeepAlive":
                continue
            if kind == "Finalize":
                await self.finalize()
            elif kind == "CloseStream":
                if self.clock > self.segment_start and self.voiced > 0:
                    await self.final(speech_final=False, from_finalize=False)
                await self.send(
                    {
                        "type": "Metadata",
                        "transaction_key": "deprecated",
                        "request_id": self.request_id,
                        "sha256": "0" * 64,
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
                        "duration": round(self.clock, 3),
                        "channels": 1,
                    }
                )
                await self.close(1000, "")
                return
            else:
                await self.send(
                    {
                        "type": "Error",
                        "variant": "SchemaError",
                        "description": f"unknown message type {kind!r}",
                        "message": text[:200],
                    }
                )

    async def hear(self, data: bytes) -> bool:
        """Take one audio frame; False once the socket had to be closed."""
        if not data or self.server.undecodable or (not self.settings.mulaw and len(data) % 2):
            await self.close(1008, "DATA-0000")
            return False
        pcm = ulaw_decode(data) if self.settings.mulaw else np.frombuffer(data, dtype="<i2").astype(np.int16)
        for start in range(0, len(pcm), self.frame):
            piece = pcm[start : start + self.frame]
            seconds = len(piece) / self.settings.rate
            rms = math.sqrt(float(np.mean(piece.astype(np.float64) ** 2))) if len(piece) else 0.0
            voiced = rms > 0 and 20 * math.log10(rms / 32768) > self.server.voiced_dbfs
            if voiced:
                if self.settings.vad_events and not self.speech_started:
                    self.speech_started = True
                    await self.send(
                        {"type": "SpeechStarted", "channel": [0], "timestamp": round(self.clock, 3)}
                    )
                self.voiced += seconds
                self.silence = 0.0
                self.voice_end = self.clock + seconds
            else:
                self.silence += seconds
            self.clock += seconds
        await self.after_audio()
        return True

    async def after_audio(self) -> None:
        settings = self.settings
        endpointing = settings.endpointing_ms
        if endpointing is not None and self.voiced > 0 and self.silence * 1000 >= endpointing:
            await self.final(speech_final=True, from_finalize=False)
            return
        if settings.interim and self.voiced > 0:
            words = (self.server.lines[0] if self.server.lines else "").split()
            shown = min(len(words), int(self.voiced / self.server.seconds_per_word + 1e-9))
            if shown != self.shown_words and shown > 0:
                self.shown_words = shown
                await self.results(words[:shown], is_final=False, speech_final=False, from_finalize=False)
        if (
            settings.utterance_end_ms is not None
            and not self.utterance_end_sent
            and self.last_word_end is not None
            and (self.clock - self.last_word_end) * 1000 >= settings.utterance_end_ms
        ):
            self.utterance_end_sent = True
            await self.send({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": self.last_word_end})

    async def finalize(self) -> None:
        if not self.server.answer_finalize or self.clock <= self.segment_start:
            return  # "not guaranteed if there is no significant amount of audio data to process"
        if self.voiced > 0:
            await self.final(speech_final=False, from_finalize=True)
        else:
            await self.results([], is_final=True, speech_final=False, from_finalize=True)
            self.segment_start = self.clock

    async def final(self, *, speech_final: bool, from_finalize: bool) -> None:
        line = self.server.lines.popleft() if self.server.lines else ""
        await self.results(
            line.split(), is_final=True, speech_final=speech_final, from_finalize=from_finalize
        )
        self.segment_start = self.clock
        self.voiced = 0.0
        self.shown_words = 0
        self.speech_started = False
        if line:
            self.utterance_end_sent = False

    async def results(
        self, words: list[str], *, is_final: bool, speech_final: bool, from_finalize: bool
    ) -> None:
        start, end = self.segment_start, self.clock
        voice_end = min(max(self.voice_end, start), end) if self.voiced > 0 else end
        step = (voice_end - start) / len(words) if words else 0.0
        wire_words = [
            {
                "word": word.strip(".,?!;:").lower(),
                "start": round(start + i * step, 3),
                "end": round(start + (i + 1) * step, 3),
                "confidence": 0.9,
                "punctuated_word": word,
            }
            for i, word in enumerate(words)
        ]
        if is_final and words:
            self.last_word_end = round(start + len(words) * step, 3)
        await self.send(
            {
                "type": "Results",
                "channel_index": [0, 1],
                "duration": round(end - start, 3),
                "start": round(start, 3),
                "is_final": is_final,
                "speech_final": speech_final,
                "from_finalize": from_finalize,
                "channel": {
                    "alternatives": [
                        {
                            "transcript": " ".join(words),
                            "confidence": 0.9 if words else 0.0,
                            "words": wire_words,
                            **({"languages": [self.server.detected_language]} if self.settings.multi else {}),
                        }
                    ]
                },
                "metadata": {
                    "request_id": self.request_id,
                    "model_info": {"name": self.settings.model, "version": "local", "arch": "local"},
                    "model_uuid": "00000000-0000-0000-0000-000000000000",
                },
            }
        )

    async def send(self, message: dict[str, Any]) -> None:
        self.call.sent.append(message)
        await self.socket.send_text(json.dumps(message))

    async def close(self, code: int, reason: str) -> None:
        self.call.close = (code, reason)
        self.server._note()
        await self.socket.close(code, reason)


class _Mouth:
    """One speak socket: text is buffered by Speak, voiced by Flush, dropped by Clear."""

    def __init__(
        self, server: DeepgramLocal, call: SpeakCall, socket: WebSocket, model: str, encoding: str, rate: int
    ) -> None:
        self.server = server
        self.call = call
        self.socket = socket
        self.model = model
        self.encoding = encoding
        self.rate = rate
        self.buffer = ""
        self.sequence = 0
        self.flush_times: deque[float] = deque()
        self.speaking: asyncio.Task[None] | None = None
        self.send_lock = asyncio.Lock()

    async def serve(self) -> None:
        await self.send_json(
            {
                "type": "Metadata",
                "request_id": str(uuid.uuid4()),
                "model_name": self.model,
                "model_version": "local",
                "model_uuid": "00000000-0000-0000-0000-000000000000",
            }
        )
        try:
            while True:
                message = await self.socket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    continue
                control = json.loads(text)
                self.call.received.append(control)
                self.server._note()
                kind = control.get("type")
                if kind == "Speak":
                    self.buffer += str(control.get("text", ""))
                elif kind == "Flush":
                    await self.flush()
                elif kind == "Clear":
                    await self.clear()
                elif kind == "Close":
                    await self.stop_speaking()
                    await self.socket.close(1000)
                    return
        finally:
            await self.stop_speaking()

    async def flush(self) -> None:
        now = time.monotonic()
        while self.flush_times and now - self.flush_times[0] > 60:
            self.flush_times.popleft()
        if len(self.flush_times) >= FLUSHES_PER_MINUTE:
            await self.send_json(
                {
                    "type": "Warning",
                    "description": "Flush limit exceeded for this minute",
                    "code": "FLUSH_LIMIT",
                }
            )
            return
        self.flush_times.append(now)
        text, self.buffer = self.buffer, ""
        self.sequence += 1
        previous = self.speaking
        self.speaking = asyncio.create_task(self.speak(text, self.sequence, previous))

    async def speak(self, text: str, sequence: int, previous: asyncio.Task[None] | None) -> None:
        if previous is not None:
            await previous
        if self.server.speak_silent:
            return
        audio = encode_audio(self.server.tone_for(text, self.rate), self.encoding)
        step = int(self.rate * self.server.speak_chunk_ms / 1000) * (2 if self.encoding == "linear16" else 1)
        for start in range(0, len(audio), step):
            if self.server.speak_chunk_delay_s:
                await asyncio.sleep(self.server.speak_chunk_delay_s)
            async with self.send_lock:
                await self.socket.send_bytes(audio[start : start + step])
            self.call.audio_frames_sent += 1
        await self.send_json({"type": "Flushed", "sequence_id": sequence})
        if self.server.close_after_flushed:
            await self.socket.close(1000)

    async def clear(self) -> None:
        await self.stop_speaking()
        self.buffer = ""
        await self.send_json({"type": "Cleared", "sequence_id": self.sequence})

    async def stop_speaking(self) -> None:
        if self.speaking is not None:
            self.speaking.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.speaking
            self.speaking = None

    async def send_json(self, message: dict[str, Any]) -> None:
        async with self.send_lock:
            await self.socket.send_text(json.dumps(message))


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
