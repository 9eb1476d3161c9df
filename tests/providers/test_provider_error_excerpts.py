"""A provider's error quoting the key it was sent never shows a piece of that key, even cut short.

Each adapter keeps only the start of what a provider said. Cut before redacting, a key straddling the
limit no longer matched and its first characters reached the error (a log, the timeline, a caller).
Each test has a local server (the ones the adapters' own tests use, where they can be told what to say)
answer with the adapter's key placed across that limit, or cut short by the server itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from parley.audio.frame import PCM16
from parley.providers.asr.deepgram import DeepgramRecognizer
from parley.providers.asr.openai_transcribe import OpenAITranscriber
from parley.providers.deepgram_wire import DETAIL_CHARS
from parley.providers.errors import ProviderCallError, ProviderRejected, ProviderUnavailable
from parley.providers.llm.base import ChatMessage
from parley.providers.llm.openai_compat import BODY_EXCERPT as LLM_EXCERPT
from parley.providers.llm.openai_compat import OpenAICompatibleModel
from parley.providers.openai_audio import BODY_EXCERPT as AUDIO_EXCERPT
from parley.providers.openai_audio import audio_client
from parley.providers.tts.deepgram import DeepgramSynthesizer
from parley.providers.tts.elevenlabs import ElevenLabsSynthesizer
from parley.providers.tts.openai_tts import OpenAISynthesizer
from parley.redaction import MIN_FRAGMENT
from tests.helpers.llm_openai_stub import StubResponse, StubServer, sse
from tests.providers.deepgram.local_server import DeepgramLocal, Refused
from tests.providers.elevenlabs.local_server import Connection, LocalElevenLabs, _json_response, _refuse
from tests.providers.openai.local_audio_server import LocalOpenAIAudio, _error, serving

KEY = "Zq8vR3mK7pXw2nTb5YhL"
"""No credential shape (no ``sk-``, ``Bearer``, ``key:``): only knowing the value can hide it."""
ELEVEN_EXCERPT = 300
"""What the ElevenLabs voice keeps of a refusal (``tts/elevenlabs._excerpt``)."""
DEEPGRAM_EVENT_CHARS = 300
DEEPGRAM_LOG_CHARS = 200
"""What the Deepgram adapters keep of an in-band ``Error`` and log of a message that is not JSON."""
ASK = [ChatMessage("user", "Hello?")]


def straddling(limit: int, lead: str = "refused the credential ") -> str:
    """A provider's words with ``KEY`` starting 10 characters before ``limit`` and ending after it."""
    return lead + "." * (limit - 10 - len(lead)) + KEY + " which was not accepted"


def assert_no_piece_of_key(text: str) -> None:
    assert KEY[:MIN_FRAGMENT] not in text, f"a piece of the key leaked: {text!r}"


def tone(seconds: float) -> PCM16:
    return (np.sin(np.arange(int(16_000 * seconds)) / 3) * 8000).astype(np.int16)


def test_the_body_places_the_key_across_the_limit() -> None:
    body = straddling(300)
    assert body.index(KEY) < 300 < body.index(KEY) + len(KEY)
    assert body[:300].endswith(KEY[:10]), "cut before redacting, ten of its characters would show"


# --- OpenAI-compatible chat ---------------------------------------------------------------------------


async def test_llm_reply_that_is_not_a_stream_does_not_show_the_key_it_quoted() -> None:
    reply = StubResponse(chunks=[straddling(LLM_EXCERPT).encode()], content_type="application/json")
    async with StubServer([reply]) as server:
        model = OpenAICompatibleModel(server.url, "m", api_key=KEY)
        with pytest.raises(ProviderUnavailable, match="expected a text/event-stream reply") as caught:
            await anext(model.stream(ASK))
        await model.aclose()
    assert_no_piece_of_key(str(caught.value))
    assert "refused the credential ..." in str(caught.value), "the start of the body stays"


async def test_llm_malformed_chunk_does_not_show_the_key_it_quoted() -> None:
    chunks = sse({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}, "{" + straddling(LLM_EXCERPT))
    async with StubServer([StubResponse(chunks=chunks)]) as server:
        model = OpenAICompatibleModel(server.url, "m", api_key=KEY)
        with pytest.raises(ProviderUnavailable, match="malformed stream chunk") as caught:
            async for _ in model.stream(ASK):
                pass
        await model.aclose()
    assert_no_piece_of_key(str(caught.value))


async def test_llm_error_body_the_server_cut_in_the_key_does_not_show_its_start() -> None:
    cut = StubResponse(status=401, chunks=[b"refused the credential " + KEY[:12].encode()], content_type="x")
    async with StubServer([cut]) as server:
        model = OpenAICompatibleModel(server.url, "m", api_key=KEY)
        with pytest.raises(ProviderUnavailable, match="HTTP 401") as caught:
            await anext(model.stream(ASK))
        await model.aclose()
    assert_no_piece_of_key(str(caught.value))
    assert "refused the credential" in str(caught.value)


# --- OpenAI speech and transcription ---------------------------------------------------------------------


class QuotingOpenAIAudio(LocalOpenAIAudio):
    """Refuses every request with the documented error object, its message quoting the key."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        await _error(send, 401, straddling(AUDIO_EXCERPT), "invalid_request_error", "invalid_api_key")


async def test_openai_speech_refusal_does_not_show_the_key_it_quoted() -> None:
    async with serving(QuotingOpenAIAudio()) as server:
        tts = OpenAISynthesizer(audio_client(server.url, KEY, 5.0), "gpt-4o-mini-tts", "coral")
        with pytest.raises(ProviderUnavailable, match="HTTP 401") as caught:
            async for _ in tts.synthesize("Hello."):
                pass
    assert_no_piece_of_key(str(caught.value))
    assert "refused the credential" in str(caught.value)


async def test_openai_transcription_refusal_does_not_show_the_key_it_quoted() -> None:
    async with serving(QuotingOpenAIAudio()) as server:
        asr = OpenAITranscriber(audio_client(server.url, KEY, 5.0), "gpt-4o-mini-transcribe")
        with pytest.raises(ProviderUnavailable, match="HTTP 401") as caught:
            await asr.transcribe(tone(0.5))
    assert_no_piece_of_key(str(caught.value))


# --- Deepgram -------------------------------------------------------------------------------------------


class QuotingDeepgram(DeepgramLocal):
    """Refuses every handshake and request, its ``dg-error`` and ``err_msg`` quoting the key."""

    def _check_key(self, headers: dict[str, str]) -> None:
        raise Refused(401, "INVALID_AUTH", straddling(DETAIL_CHARS))


async def test_deepgram_refused_handshake_does_not_show_the_key_it_quoted() -> None:
    async with QuotingDeepgram(api_key=KEY) as dg:
        stream = DeepgramRecognizer(KEY, base_url=dg.url).open_stream()
        await stream.push(tone(0.2))
        with pytest.raises(ProviderUnavailable, match="refused the API key") as caught:
            await stream.finalize()
        await stream.aclose()
        for transport in ("websocket", "rest"):
            synth = DeepgramSynthesizer(KEY, base_url=dg.url, transport=transport)
            with pytest.raises(ProviderUnavailable, match="refused the API key") as spoken:
                async for _ in synth.synthesize("Hello."):
                    pass
            await synth.aclose()
            assert_no_piece_of_key(str(spoken.value))
    assert_no_piece_of_key(str(caught.value))
    assert "refused the credential" in str(caught.value)


@asynccontextmanager
async def scripted_socket(frames: Sequence[str], close: tuple[int, str]) -> AsyncIterator[str]:
    """A WebSocket server that accepts, waits for the client's first message, sends ``frames``, then
    closes with ``close``; yields its URL."""

    async def handler(socket: ServerConnection) -> None:
        await socket.recv()
        for frame in frames:
            await socket.send(frame)
        await socket.close(*close)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"http://127.0.0.1:{port}"


async def test_deepgram_in_band_error_and_its_log_do_not_show_the_key_they_quoted() -> None:
    frames = [
        "<html>" + straddling(DEEPGRAM_LOG_CHARS),  # not JSON: logged
        json.dumps({"type": "Error", "description": straddling(DEEPGRAM_EVENT_CHARS)}),
    ]
    async with scripted_socket(frames, (1011, "")) as url:
        synth = DeepgramSynthesizer(KEY, base_url=url)
        with capture_logs() as logs, pytest.raises(ProviderRejected, match="reported an error") as caught:
            async for _ in synth.synthesize("Hello."):
                pass
        await synth.aclose()
        stream = DeepgramRecognizer(KEY, base_url=url).open_stream()
        await stream.push(tone(0.2))
        with capture_logs() as heard, pytest.raises(ProviderRejected, match="reported an error") as failed:
            await stream.finalize()
        # Closing a stream that failed while its socket still ran re-raises the cancel of its runner
        # (``DeepgramStream.aclose`` awaits the cancelled task through ``shield``): not what is tested here.
        with contextlib.suppress(asyncio.CancelledError):
            await stream.aclose()
    for error in (caught.value, failed.value):
        assert_no_piece_of_key(str(error))
        assert "refused the credential" in str(error)
    logged = [
        entry for entry in [*logs, *heard] if entry["event"] == "deepgram sent a message that is not JSON"
    ]
    assert len(logged) == 2
    for entry in logged:
        assert_no_piece_of_key(str(entry["excerpt"]))
        assert str(entry["excerpt"]).startswith("<html>refused the credential")


async def test_deepgram_close_reason_the_server_cut_in_the_key_does_not_show_its_start() -> None:
    async with scripted_socket([], (1011, "NET-0001 upstream saw " + KEY[:12])) as url:
        synth = DeepgramSynthesizer(KEY, base_url=url)
        with pytest.raises(ProviderUnavailable, match="closed the speech synthesis socket") as caught:
            async for _ in synth.synthesize("Hello."):
                pass
        await synth.aclose()
    assert_no_piece_of_key(str(caught.value))
    assert "1011 NET-0001" in str(caught.value)


# --- ElevenLabs ------------------------------------------------------------------------------------------


class QuotingElevenLabs(LocalElevenLabs):
    """Refuses the handshake (``handshake``), the request in-band (``in_band``) or closes at once
    (``close_reason``), each time quoting the key."""

    def __init__(self, *, handshake: bool = False, in_band: bool = False, close_reason: str = "") -> None:
        super().__init__(api_key=KEY)
        self.refuse_handshake, self.in_band, self.close_reason = handshake, in_band, close_reason

    def _check_handshake(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse_handshake:  # the REST API's error body; the key straddles the limit in it, whole
            before = len(json.dumps({"detail": {"status": "invalid_api_key", "message": ""}})) - 3
            body = {"detail": {"status": "invalid_api_key", "message": straddling(ELEVEN_EXCERPT - before)}}
            return _json_response(connection, HTTPStatus.UNAUTHORIZED, body)
        return super()._check_handshake(connection, request)

    async def _converse(self, socket: ServerConnection, record: Connection, rate: int, voice_id: str) -> None:
        if self.in_band:
            await _refuse(socket, "quota_exceeded", straddling(ELEVEN_EXCERPT))
        elif self.close_reason:
            await socket.close(1011, self.close_reason)
        else:
            await super()._converse(socket, record, rate, voice_id)


@pytest.mark.parametrize(
    ("server", "match"),
    [
        (lambda: QuotingElevenLabs(handshake=True), "refused the connection \\(HTTP 401\\)"),
        (lambda: QuotingElevenLabs(in_band=True), "refused to synthesize \\(quota_exceeded\\)"),
        (lambda: QuotingElevenLabs(close_reason="overloaded for " + KEY[:12]), "closed the stream"),
    ],
    ids=["handshake", "in-band", "close-reason"],
)
async def test_elevenlabs_refusal_does_not_show_the_key_it_quoted(server: Any, match: str) -> None:
    async with server() as local:
        tts = ElevenLabsSynthesizer(KEY, "21m00Tcm4TlvDq8ikWAM", base_url=local.url, timeout_s=5.0)
        with pytest.raises(ProviderCallError, match=match) as caught:
            async for _ in tts.synthesize_aligned("Hello there."):
                pass
    assert_no_piece_of_key(str(caught.value))


async def test_a_key_nobody_quoted_leaves_the_excerpt_as_it_was() -> None:
    """Only the key goes: an error that never quoted it keeps its full excerpt."""
    said = "refused the credential " + "." * 400
    async with StubServer([StubResponse(status=500, chunks=[said.encode()], content_type="x")]) as server:
        model = OpenAICompatibleModel(server.url, "m", api_key=KEY, max_attempts=1)
        with pytest.raises(ProviderUnavailable) as caught:
            await anext(model.stream(ASK))
        await model.aclose()
    assert said in str(caught.value)
