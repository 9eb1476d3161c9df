"""The Deepgram recogniser against a local server that speaks Deepgram's live-transcription protocol."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from parley.audio.frame import PCM16
from parley.config import Settings
from parley.providers.asr.deepgram import DeepgramRecognizer, DeepgramStream, ListenSettings
from parley.providers.errors import ProviderRejected, ProviderUnavailable
from parley.providers.options import DeepgramAsrOptions, OptionsError, validate_options
from parley.providers.registry import BuildRequest, ProviderError, provider
from tests.providers.deepgram.local_server import DeepgramLocal

KEY = "dg-local-key"
RATE = 16_000


def voice(seconds: float, level: float = 0.3) -> PCM16:
    """A tone the local server counts as voiced audio."""
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(level * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


def silence(seconds: float) -> PCM16:
    return np.zeros(int(seconds * RATE), np.int16)


async def push(stream: DeepgramStream, pcm: PCM16, chunk_s: float = 0.02) -> None:
    """Push as the session does: 20 ms at a time."""
    step = int(chunk_s * RATE)
    for start in range(0, len(pcm), step):
        await stream.push(pcm[start : start + step])


async def until(stream: DeepgramStream, condition: Callable[[], bool]) -> None:
    """Until ``condition()`` holds, re-checked after each message the stream takes in."""
    async with asyncio.timeout(5):
        while not condition():
            await stream.wait_for_update()


async def until_interim(stream: DeepgramStream, text: str) -> None:
    """Until the stream's interim transcript reads ``text``."""
    async with asyncio.timeout(5):
        while (await stream.interim()).text != text:
            await stream.wait_for_update()


def recognizer(dg: DeepgramLocal, **settings: Any) -> DeepgramRecognizer:
    """Deepgram's endpointing off unless asked: these tests finalize as the session does, at a pause."""
    return DeepgramRecognizer(
        KEY, ListenSettings(**{"endpointing_ms": None, **settings}), base_url=dg.url, connect_timeout=2.0
    )


async def test_deepgram_socket_carries_the_documented_query_and_token() -> None:
    async with DeepgramLocal(lines=["Call HubSpot for me."]) as dg:
        stream = recognizer(dg, endpointing_ms=300, utterance_end_ms=1000).open_stream(["HubSpot", "Parley"])
        await push(stream, voice(0.5))
        final = await stream.finalize()
        await stream.aclose()
    call = dg.listen_calls[0]
    assert call.headers["authorization"] == f"Token {KEY}"
    assert call.param("model") == "nova-3"
    assert call.param("encoding") == "linear16"
    assert call.param("sample_rate") == "16000"
    assert call.param("channels") == "1"
    assert call.param("interim_results") == "true"
    assert call.param("endpointing") == "300"
    assert call.param("utterance_end_ms") == "1000"
    assert call.param("language") == "en"
    assert call.params["keyterm"] == ["HubSpot", "Parley"]
    assert "keywords" not in call.params
    assert final.text == "Call HubSpot for me."
    # Audio first, then Finalize, then CloseStream; Deepgram closes normally.
    assert call.received[0] == "audio"
    assert call.received[-2:] == ["Finalize", "CloseStream"]
    assert call.close == (1000, "")


async def test_deepgram_older_models_get_keywords_not_keyterm() -> None:
    async with DeepgramLocal(lines=["Hello."]) as dg:
        stream = recognizer(dg, model="nova-2").open_stream(["HubSpot"])
        await push(stream, voice(0.3))
        assert (await stream.finalize()).text == "Hello."
        await stream.aclose()
    assert dg.listen_calls[0].params["keywords"] == ["HubSpot"]


async def test_deepgram_interim_results_arrive_while_the_caller_speaks() -> None:
    async with DeepgramLocal(lines=["What are your opening hours today?"], seconds_per_word=0.1) as dg:
        stream = recognizer(dg).open_stream()
        await push(stream, voice(0.25))
        # Two words voiced (one per 0.1 s of voice at the local server): an interim result, not final.
        await until_interim(stream, "What are")
        interim = await stream.interim()
        assert interim.is_final is False
        assert [w.text for w in interim.words] == ["What", "are"]
        await push(stream, voice(0.35))
        await until_interim(stream, "What are your opening hours today?")
        final = await stream.finalize()
        await stream.aclose()
    assert final.is_final and final.text == "What are your opening hours today?"
    interims = [m for m in dg.listen_calls[0].sent if m["type"] == "Results" and not m["is_final"]]
    assert len(interims) == 6


async def test_deepgram_finalize_returns_everything_with_word_times_per_utterance() -> None:
    async with DeepgramLocal(lines=["I need a table for four.", "At seven tonight."]) as dg:
        stream = recognizer(dg).open_stream()
        await push(stream, voice(0.6))
        first = await stream.finalize()
        await push(stream, voice(0.4))
        second = await stream.finalize()
        await stream.aclose()
    assert first.text == "I need a table for four."
    assert [w.text for w in first.words] == ["I", "need", "a", "table", "for", "four."]
    assert first.words[0].start == pytest.approx(0.0, abs=0.02)
    assert first.words[-1].end == pytest.approx(0.6, abs=0.03)
    assert all(w.probability == pytest.approx(0.9) for w in first.words)
    assert first.audio_seconds == pytest.approx(0.6, abs=0.01)
    # The second utterance's words are timed from its own start, on the same socket.
    assert second.text == "At seven tonight."
    assert second.words[0].start == pytest.approx(0.0, abs=0.02)
    assert second.words[-1].end == pytest.approx(0.4, abs=0.03)
    assert len(dg.listen_calls) == 1
    assert dg.listen_calls[0].received.count("Finalize") == 2


async def test_deepgram_finalize_after_endpointing_returns_without_waiting() -> None:
    """Deepgram's own endpointing already finalized the speech; Finalize then finds little audio and
    need not be answered: the stream sees that every second sent is covered and returns."""
    async with DeepgramLocal(lines=["Yes please."]) as dg:
        stream = recognizer(dg, endpointing_ms=300).open_stream()
        await push(stream, np.concatenate([voice(0.4), silence(0.4)]))
        final = await stream.finalize()
        await stream.aclose()
    assert final.text == "Yes please."
    assert stream.stats.finalize_timeouts == 0
    speech_finals = [m for m in dg.listen_calls[0].sent if m["type"] == "Results" and m["speech_final"]]
    assert len(speech_finals) == 1


async def test_deepgram_unanswered_finalize_lets_the_interim_stand() -> None:
    async with DeepgramLocal(lines=["Cancel my order."], seconds_per_word=0.1) as dg:
        dg.answer_finalize = False
        stream = DeepgramRecognizer(
            KEY, ListenSettings(endpointing_ms=None), base_url=dg.url, finalize_timeout=0.2
        ).open_stream()
        await push(stream, voice(0.35))
        await until_interim(stream, "Cancel my order.")
        final = await stream.finalize()
        await stream.aclose()
    assert final.is_final and final.text == "Cancel my order."
    assert stream.stats.finalize_timeouts == 1


async def test_deepgram_keepalive_keeps_an_idle_socket_open() -> None:
    """Between turns nothing is sent; KeepAlive stops the server's idle timeout closing the socket."""
    async with DeepgramLocal(lines=["Hello.", "Still there?"], idle_timeout_s=0.5) as dg:
        stream = DeepgramRecognizer(
            KEY, ListenSettings(endpointing_ms=None), base_url=dg.url, keepalive_interval=0.1
        ).open_stream()
        await push(stream, voice(0.3))
        assert (await stream.finalize()).text == "Hello."
        # Idle for more than the server's timeout, in KeepAlives: at least 8 of them, 0.1 s apart.
        await dg.until(lambda: dg.listen_calls[0].received.count("KeepAlive") >= 8)
        assert dg.listen_calls[0].close is None
        await push(stream, voice(0.3))
        assert (await stream.finalize()).text == "Still there?"
        await stream.aclose()
    assert len(dg.listen_calls) == 1
    assert stream.stats.keepalives >= 8


async def test_deepgram_without_keepalive_the_idle_socket_is_closed_and_reopened() -> None:
    async with DeepgramLocal(lines=["Hello.", "Again."], idle_timeout_s=0.3) as dg:
        stream = DeepgramRecognizer(
            KEY, ListenSettings(endpointing_ms=None), base_url=dg.url, keepalive_interval=30
        ).open_stream()
        await push(stream, voice(0.3))
        assert (await stream.finalize()).text == "Hello."
        await dg.until(lambda: dg.listen_calls[0].close is not None)
        assert dg.listen_calls[0].close == (1011, "NET-0001")
        await push(stream, voice(0.3))
        assert (await stream.finalize()).text == "Again."
        await stream.aclose()
    assert stream.stats.reconnects == 1


async def test_deepgram_dropped_socket_reconnects_and_resends_what_was_not_final() -> None:
    async with DeepgramLocal(lines=["My account number is four two.", "Thanks."]) as dg:
        dg.drops, dg.drop_after_audio_s = 1, 0.3
        stream = recognizer(dg).open_stream()
        audio = voice(0.8)
        await push(stream, audio)
        final = await stream.finalize()
        await push(stream, voice(0.3))
        after = await stream.finalize()
        await stream.aclose()
    first, second = dg.listen_calls
    assert first.close == (1011, "NET-0000")
    assert stream.stats.reconnects == 1
    # Nothing had been finalized: the new socket got the whole utterance again, then Finalize.
    assert second.audio_bytes >= audio.size * 2
    assert second.received.index("Finalize") > second.received.index("audio")
    assert final.text == "My account number is four two."
    assert final.words[-1].end == pytest.approx(0.8, abs=0.05)
    assert after.text == "Thanks."


async def test_deepgram_bad_key_is_provider_unavailable_with_a_clear_message() -> None:
    async with DeepgramLocal() as dg:
        stream = DeepgramRecognizer("not-the-key", base_url=dg.url).open_stream()
        await push(stream, voice(0.2))  # never raises: the session's hearing carries on
        with pytest.raises(ProviderUnavailable) as caught:
            await stream.finalize()
        await stream.aclose()
    message = str(caught.value)
    assert "refused the API key" in message and "401" in message and "Invalid credentials" in message
    assert "not-the-key" not in message
    assert caught.value.provider == "deepgram" and caught.value.status == 401
    assert dg.refusals == [("listen", 401)]


async def test_deepgram_request_it_refuses_is_provider_rejected() -> None:
    async with DeepgramLocal() as dg:
        # Options would refuse this combination; the server does too (utterance end needs interims).
        stream = DeepgramRecognizer(
            KEY, ListenSettings(interim_results=False, utterance_end_ms=1000), base_url=dg.url
        ).open_stream()
        await push(stream, voice(0.2))
        with pytest.raises(ProviderRejected, match=r"HTTP 400.*utterance_end_ms"):
            await stream.finalize()
        await stream.aclose()


async def test_deepgram_undecodable_audio_fails_the_stream_without_reconnecting() -> None:
    async with DeepgramLocal() as dg:
        dg.undecodable = True
        stream = recognizer(dg).open_stream()
        await push(stream, voice(0.2))
        with pytest.raises(ProviderRejected, match="1008 DATA-0000"):
            await stream.finalize()
        await stream.aclose()
    assert len(dg.listen_calls) == 1


async def test_deepgram_unreachable_host_is_provider_unavailable() -> None:
    stream = DeepgramRecognizer(KEY, base_url="http://127.0.0.1:9", connect_timeout=1.0).open_stream()
    await push(stream, voice(0.1))
    with pytest.raises(ProviderUnavailable, match="could not be reached"):
        await stream.finalize()
    await stream.aclose()


async def test_deepgram_mulaw_8k_goes_on_the_wire_as_a_phone_line_would() -> None:
    async with DeepgramLocal(lines=["I'm calling from my phone."]) as dg:
        stream = recognizer(dg, encoding="mulaw", sample_rate=8000).open_stream()
        await push(stream, voice(1.0))
        final = await stream.finalize()
        await stream.aclose()
    call = dg.listen_calls[0]
    assert (call.param("encoding"), call.param("sample_rate")) == ("mulaw", "8000")
    # One byte a sample at 8 kHz: a second of the session's 16 kHz audio is 8000 bytes on the wire.
    assert abs(call.audio_bytes - 8000) <= 16
    assert final.text == "I'm calling from my phone."
    assert final.audio_seconds == pytest.approx(1.0, abs=0.01)


async def test_deepgram_speech_started_and_utterance_end_events_are_kept() -> None:
    async with DeepgramLocal(lines=["Hi there."]) as dg:
        stream = recognizer(dg, vad_events=True, endpointing_ms=300, utterance_end_ms=1000).open_stream()
        await push(stream, np.concatenate([silence(0.2), voice(0.4), silence(1.2)]))
        await until(stream, lambda: bool(stream.stats.utterance_ends))
        final = await stream.finalize()
        await stream.aclose()
    assert stream.stats.speech_started == [pytest.approx(0.2, abs=0.011)]
    assert stream.stats.utterance_ends == [pytest.approx(0.6, abs=0.02)]
    assert final.text == "Hi there."


async def test_deepgram_reports_the_language_it_heard() -> None:
    async with DeepgramLocal(lines=["¿Abren mañana?", "Hello."]) as dg:
        dg.detected_language = "es"
        multi = recognizer(dg, language="multi").open_stream()
        await push(multi, voice(0.3))
        spanish = await multi.finalize()
        await multi.aclose()
        told = recognizer(dg, language="en-US").open_stream()
        await push(told, voice(0.3))
        english = await told.finalize()
        await told.aclose()
    assert (spanish.text, spanish.language) == ("¿Abren mañana?", "es")
    assert (english.text, english.language) == ("Hello.", "en")


async def test_deepgram_stream_with_nothing_pushed_never_connects() -> None:
    async with DeepgramLocal() as dg:
        stream = recognizer(dg).open_stream()
        assert (await stream.interim()).text == ""
        final = await stream.finalize()
        await stream.aclose()
    assert final.is_final and final.text == ""
    assert dg.listen_calls == []


def test_deepgram_asr_options_bound_what_an_agent_may_ask() -> None:
    assert validate_options("asr", "deepgram", {"encoding": "mulaw", "sample_rate": 8000}) == {
        "encoding": "mulaw",
        "sample_rate": 8000,
    }
    with pytest.raises(OptionsError, match="mulaw is sent at sample_rate 8000"):
        validate_options("asr", "deepgram", {"encoding": "mulaw"})
    with pytest.raises(OptionsError, match="utterance_end_ms needs interim_results"):
        validate_options("asr", "deepgram", {"utterance_end_ms": 1000, "interim_results": False})
    with pytest.raises(OptionsError, match="operator setting"):
        validate_options("asr", "deepgram", {"base_url": "http://evil.example"})
    with pytest.raises(OptionsError):
        validate_options("asr", "deepgram", {"model": "whatever-model"})


def test_deepgram_asr_key_comes_from_a_named_secret_or_the_operator() -> None:
    import parley.stack  # noqa: F401  (registers the built-in providers)

    entry = provider("asr", "deepgram")
    host = Settings(deepgram_base_url="http://127.0.0.1:1")
    options = DeepgramAsrOptions(api_key_secret="DG_KEY", encoding="mulaw", sample_rate=8000)
    assert list(entry.secret_names(options)) == ["DG_KEY"]
    built = entry.factory(BuildRequest(options, host, {"DG_KEY": "secret-value"}))
    assert isinstance(built, DeepgramRecognizer)
    assert built.settings.encoding == "mulaw" and built.settings.sample_rate == 8000
    with pytest.raises(ProviderError, match="no secret named 'DG_KEY'"):
        entry.factory(BuildRequest(options, host, {}))
    with pytest.raises(ProviderError, match="PARLEY_DEEPGRAM_API_KEY"):
        entry.factory(BuildRequest(DeepgramAsrOptions(), host, {}))
