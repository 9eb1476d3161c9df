"""A local stand-in for OpenAI's audio routes, for the speech and transcription adapters' tests.

It implements the two routes as OpenAI's API reference describes them and checks what the client sends:

- ``POST /v1/audio/speech`` ("Create speech", https://platform.openai.com/docs/api-reference/audio/createSpeech;
  the SDK's ``openai/resources/audio/speech.py``): a JSON body ``{model, input, voice, response_format,
  speed?, instructions?}``; ``input`` at most 4096 characters, ``speed`` 0.25–4.0; with
  ``response_format: "pcm"`` the answer is raw 24 kHz 16-bit signed little-endian mono, streamed in chunks
  as it is generated (chunked transfer, no Content-Length).
- ``POST /v1/audio/transcriptions`` ("Create transcription",
  https://platform.openai.com/docs/api-reference/audio/createTranscription;
  ``openai/resources/audio/transcriptions.py``): ``multipart/form-data`` with the ``file`` part (a WAV
  here) and the fields ``model``, ``language``, ``prompt``, ``response_format``; the ``json`` answer is
  ``{"text": ..., "usage": {"type": "duration", "seconds": ...}}`` (``openai/types/audio/transcription.py``).
- Auth is ``Authorization: Bearer <key>``; errors are the documented error object
  ``{"error": {"message", "type", "param", "code"}}`` (https://platform.openai.com/docs/guides/error-codes):
  401 ``invalid_api_key``, 429 ``insufficient_quota``, 404 ``model_not_found``, 400 for a bad field.

It cannot understand speech: the transcription route answers the next of ``transcripts`` (what the test's
caller "says"), after checking the file is a WAV with audio in it. Its voice is a quiet tone,
``ms_per_char`` per character of the input.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import io
import itertools
import json
import wave
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import uvicorn

from parley.server.lifecycle import bound_port

SPEECH_MODELS = {"gpt-4o-mini-tts", "tts-1", "tts-1-hd"}
TRANSCRIPTION_MODELS = {"gpt-4o-mini-transcribe", "gpt-4o-transcribe", "whisper-1"}
VOICES = {"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse"}
PCM_RATE = 24_000


@dataclass
class SpeechRequest:
    headers: dict[str, str]
    body: dict[str, Any]
    disconnected_early: bool = False
    """The client went away before the whole body was sent."""
    ended: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class TranscriptionRequest:
    headers: dict[str, str]
    fields: dict[str, str]
    filename: str
    content_type: str
    sample_rate: int
    channels: int
    seconds: float


@dataclass
class LocalOpenAIAudio:
    api_key: str = "test-openai-key"
    transcripts: list[str] = field(default_factory=list)
    ms_per_char: float = 40.0
    chunk_ms: float = 100.0
    chunk_delay_s: float = 0.0
    quota_exceeded: bool = False
    speech: list[SpeechRequest] = field(default_factory=list)
    transcriptions: list[TranscriptionRequest] = field(default_factory=list)
    url: str = ""
    """The API base, as ``PARLEY_OPENAI_BASE_URL`` takes it (``http://127.0.0.1:<port>/v1``)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        route = (scope["method"], scope["path"])
        if route not in {("POST", "/v1/audio/speech"), ("POST", "/v1/audio/transcriptions")}:
            await _error(
                send, 404, f"Invalid URL ({scope['method']} {scope['path']})", "invalid_request_error"
            )
            return
        if headers.get("authorization") != f"Bearer {self.api_key}":
            await _error(send, 401, "Incorrect API key provided.", "invalid_request_error", "invalid_api_key")
            return
        if self.quota_exceeded:
            await _error(
                send, 429, "You exceeded your current quota.", "insufficient_quota", "insufficient_quota"
            )
            return
        if scope["path"] == "/v1/audio/speech":
            await self._speech(headers, body, receive, send)
        else:
            await self._transcription(headers, body, send)

    # --- /v1/audio/speech ---------------------------------------------------------------------------

    async def _speech(self, headers: dict[str, str], body: bytes, receive: Any, send: Any) -> None:
        if not headers.get("content-type", "").startswith("application/json"):
            await _error(send, 400, "Expected a JSON body.", "invalid_request_error")
            return
        request = json.loads(body)
        record = SpeechRequest(headers, request)
        self.speech.append(record)
        problem = _speech_problem(request)
        if problem is not None:
            status, message, param, code = problem
            await _error(send, status, message, "invalid_request_error", code, param)
            return
        samples = round(len(request["input"]) * self.ms_per_char / 1000 * PCM_RATE)
        pcm = _tone(samples, PCM_RATE).astype("<i2").tobytes()
        step = round(self.chunk_ms / 1000 * PCM_RATE) * 2
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")],
            }
        )
        gone = asyncio.create_task(_disconnected(receive))
        # Cut at odd byte offsets on purpose: a client must not assume a chunk holds whole samples.
        cuts = [0, *range(step + 1, len(pcm), step), len(pcm)]
        try:
            for start, end in itertools.pairwise(cuts):
                if self.chunk_delay_s:
                    done, _ = await asyncio.wait({gone}, timeout=self.chunk_delay_s)
                    if done:
                        record.disconnected_early = True
                        return
                await send({"type": "http.response.body", "body": pcm[start:end], "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            record.ended.set()

    # --- /v1/audio/transcriptions -------------------------------------------------------------------

    async def _transcription(self, headers: dict[str, str], body: bytes, send: Any) -> None:
        content_type = headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            await _error(send, 400, "Expected multipart/form-data.", "invalid_request_error")
            return
        parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields: dict[str, str] = {}
        upload: tuple[str, str, bytes] | None = None
        for part in parsed.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            assert isinstance(name, str) and isinstance(payload, bytes)
            filename = part.get_filename()
            if name == "file" and filename:
                upload = (filename, part.get_content_type(), payload)
            else:
                fields[name] = payload.decode()
        if upload is None:
            await _error(send, 400, "Missing the file.", "invalid_request_error", None, "file")
            return
        if fields.get("model") not in TRANSCRIPTION_MODELS:
            model = fields.get("model")
            await _error(
                send, 404, f"The model `{model}` does not exist.", "invalid_request_error", "model_not_found"
            )
            return
        filename, file_type, data = upload
        try:
            with wave.open(io.BytesIO(data)) as wav:
                rate, channels, frames = wav.getframerate(), wav.getnchannels(), wav.getnframes()
                width = wav.getsampwidth()
        except (wave.Error, EOFError):
            await _error(send, 400, "Invalid file format.", "invalid_request_error", None, "file")
            return
        if width != 2 or frames == 0:
            await _error(send, 400, "Audio file might be corrupted or unsupported.", "invalid_request_error")
            return
        seconds = frames / rate
        self.transcriptions.append(
            TranscriptionRequest(headers, fields, filename, file_type, rate, channels, seconds)
        )
        text = self.transcripts.pop(0) if self.transcripts else ""
        answer = {"text": text, "usage": {"type": "duration", "seconds": round(seconds + 0.5)}}
        await _json(send, 200, answer)


def _speech_problem(request: dict[str, Any]) -> tuple[int, str, str, str | None] | None:
    model, text, voice = request.get("model"), request.get("input"), request.get("voice")
    if model not in SPEECH_MODELS:
        return 404, f"The model `{model}` does not exist.", "model", "model_not_found"
    if not isinstance(text, str) or not text or len(text) > 4096:
        return 400, "input must be 1 to 4096 characters.", "input", None
    if voice not in VOICES:
        return (
            400,
            f"Invalid value: '{voice}'. Supported voices are: {', '.join(sorted(VOICES))}.",
            "voice",
            None,
        )
    if request.get("response_format") != "pcm":
        return 400, "This stand-in serves response_format pcm only.", "response_format", None
    speed = request.get("speed", 1.0)
    if not isinstance(speed, int | float) or not 0.25 <= speed <= 4.0:
        return 400, "speed must be between 0.25 and 4.0.", "speed", None
    if "instructions" in request and model != "gpt-4o-mini-tts":
        return 400, "instructions are not supported with this model.", "instructions", None
    return None


async def _disconnected(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _json(send: Any, status: int, body: dict[str, Any]) -> None:
    await send(
        {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})


async def _error(
    send: Any, status: int, message: str, kind: str, code: str | None = None, param: str | None = None
) -> None:
    await _json(send, status, {"error": {"message": message, "type": kind, "param": param, "code": code}})


def _tone(samples: int, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    t = np.arange(samples) / rate
    return np.round(0.1 * np.sin(2 * np.pi * 330 * t) * 32767).astype(np.int16)


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(server: LocalOpenAIAudio) -> AsyncIterator[LocalOpenAIAudio]:
    """Run ``server`` on a free loopback port for the duration of the block."""
    runner = _Quiet(uvicorn.Config(server, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(runner.serve())
    while not runner.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    server.url = f"http://127.0.0.1:{bound_port(runner)}/v1"
    try:
        yield server
    finally:
        runner.should_exit = True
        await asyncio.wait_for(task, 10)
