"""The Deepgram Aura voice against a local server that speaks Aura's socket and REST protocols."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np
import pytest

from parley.audio.codecs import ulaw_decode, ulaw_encode
from parley.audio.frame import PCM16
from parley.config import Settings
from parley.providers.errors import ProviderRejected, ProviderUnavailable
from parley.providers.options import DeepgramTtsOptions, OptionsError, validate_options
from parley.providers.registry import BuildRequest, provider
from parley.providers.tts.deepgram import DeepgramSynthesizer
from tests.providers.deepgram.local_server import DeepgramLocal

KEY = "dg-local-key"


def voice(dg: DeepgramLocal, **options: Any) -> DeepgramSynthesizer:
    return DeepgramSynthesizer(KEY, base_url=dg.url, connect_timeout=2.0, **options)


async def say(synth: DeepgramSynthesizer, text: str) -> list[PCM16]:
    return [chunk async for chunk in synth.synthesize(text)]


def messages(dg: DeepgramLocal, call: int = 0) -> list[str]:
    return [str(m["type"]) for m in dg.speak_calls[call].received]


async def test_deepgram_tts_streams_a_phrase_in_chunks_over_the_socket() -> None:
    async with DeepgramLocal() as dg:
        synth = voice(dg)
        chunks = await say(synth, "  Hello, how can I help?  ")
        await synth.aclose()
    call = dg.speak_calls[0]
    assert call.headers["authorization"] == f"Token {KEY}"
    assert (call.params["model"], call.params["encoding"], call.params["sample_rate"]) == (
        ["aura-2-thalia-en"],
        ["linear16"],
        ["24000"],
    )
    assert call.received[:2] == [{"type": "Speak", "text": "Hello, how can I help?"}, {"type": "Flush"}]
    assert len(chunks) == call.audio_frames_sent > 1, "audio streams as it comes, frame by frame"
    audio = np.concatenate(chunks)
    assert np.array_equal(audio, dg.tone_for("Hello, how can I help?", 24_000))
    assert synth.sample_rate == 24_000
    assert synth.stats.request_ids, "Deepgram's Metadata was read"


async def test_deepgram_tts_keeps_one_socket_for_phrase_after_phrase() -> None:
    async with DeepgramLocal() as dg:
        synth = voice(dg)
        first = np.concatenate(await say(synth, "Sure."))
        second = np.concatenate(await say(synth, "Your table is booked for seven."))
        await synth.aclose()
    assert len(dg.speak_calls) == 1 and synth.stats.sockets_opened == 1
    assert messages(dg) == ["Speak", "Flush", "Speak", "Flush", "Close"]
    assert first.size == dg.samples_for("Sure.", 24_000)
    assert second.size == dg.samples_for("Your table is booked for seven.", 24_000)


async def test_deepgram_tts_warm_up_opens_the_socket_ahead() -> None:
    async with DeepgramLocal() as dg:
        synth = voice(dg)
        await synth.warm_up()
        assert synth.idle_sockets == 1
        await say(synth, "Hi.")
        await synth.aclose()
    assert synth.stats.sockets_opened == 1


async def test_deepgram_tts_consumer_that_stops_gets_the_socket_cleared() -> None:
    """Barge-in: the reply stops listening mid-phrase. Clear stops Deepgram, Cleared makes the socket
    reusable, and the next phrase hears none of the old one's audio."""
    async with DeepgramLocal() as dg:
        dg.speak_chunk_delay_s = 0.005
        synth = voice(dg)
        long = "This is a long answer that the caller is going to interrupt halfway through."
        async with contextlib.aclosing(synth.synthesize(long)) as chunks:
            heard = [await anext(chunks), await anext(chunks)]
        await synth.settle()
        assert synth.stats.clears == 1 and synth.idle_sockets == 1
        dg.speak_chunk_delay_s = 0.0
        after = np.concatenate(await say(synth, "Yes?"))
        await synth.aclose()
    assert len(heard) == 2
    assert messages(dg)[:4] == ["Speak", "Flush", "Clear", "Speak"]
    assert synth.stats.sockets_opened == 1
    assert np.array_equal(after, dg.tone_for("Yes?", 24_000)), "nothing of the cleared phrase leaked"


async def test_deepgram_tts_cancelled_reply_clears_the_socket() -> None:
    async with DeepgramLocal() as dg:
        dg.speak_chunk_delay_s = 0.005
        synth = voice(dg)
        first_chunk = asyncio.Event()

        async def reply() -> None:
            async for _ in synth.synthesize("A reply the caller talks over before it is done."):
                first_chunk.set()

        task = asyncio.create_task(reply())
        await first_chunk.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await synth.settle()
        await dg.until(lambda: "Clear" in messages(dg))
        await synth.aclose()
    assert synth.stats.clears == 1


async def test_deepgram_tts_retires_a_socket_before_the_flush_limit() -> None:
    async with DeepgramLocal() as dg:
        synth = voice(dg, flushes_per_socket=2)
        for text in ("One.", "Two.", "Three."):
            await say(synth, text)
        await synth.settle()
        await synth.aclose()
    assert synth.stats.sockets_opened == 2
    assert messages(dg, 0) == ["Speak", "Flush", "Speak", "Flush", "Close"]
    assert messages(dg, 1)[:2] == ["Speak", "Flush"]


async def test_deepgram_tts_replaces_a_pooled_socket_that_was_closed() -> None:
    async with DeepgramLocal() as dg:
        dg.close_after_flushed = True
        synth = voice(dg)
        await say(synth, "First.")
        second = np.concatenate(await say(synth, "Second phrase."))
        await synth.aclose()
    assert synth.stats.sockets_opened == 2
    assert np.array_equal(second, dg.tone_for("Second phrase.", 24_000)), "said once, whole"


async def test_deepgram_tts_bad_key_is_provider_unavailable() -> None:
    async with DeepgramLocal() as dg:
        synth = DeepgramSynthesizer("wrong-key", base_url=dg.url)
        with pytest.raises(ProviderUnavailable) as caught:
            await say(synth, "Hello.")
    assert "refused the API key" in str(caught.value) and "401" in str(caught.value)
    assert "wrong-key" not in str(caught.value)


async def test_deepgram_tts_unknown_voice_is_rejected() -> None:
    async with DeepgramLocal() as dg:
        synth = voice(dg, model="thalia")
        with pytest.raises(ProviderRejected, match="HTTP 400"):
            await say(synth, "Hello.")


async def test_deepgram_tts_stalled_synthesis_times_out_as_unavailable() -> None:
    async with DeepgramLocal() as dg:
        dg.speak_silent = True
        synth = voice(dg, timeout=0.2)
        with pytest.raises(ProviderUnavailable, match="no audio"):
            await say(synth, "Hello.")
        await synth.aclose()


async def test_deepgram_tts_mulaw_8k_is_decoded_to_pcm() -> None:
    async with DeepgramLocal() as dg:
        synth = voice(dg, encoding="mulaw", sample_rate=8000)
        audio = np.concatenate(await say(synth, "Press one."))
        await synth.aclose()
    assert dg.speak_calls[0].params["encoding"] == ["mulaw"]
    expected = ulaw_decode(ulaw_encode(dg.tone_for("Press one.", 8000)))
    assert np.array_equal(audio, expected)


async def test_deepgram_tts_rest_fallback_streams_the_body() -> None:
    async with DeepgramLocal() as dg:
        synth = voice(dg, transport="rest")
        chunks = await say(synth, "Thanks for calling.")
        await synth.aclose()
    call = dg.rest_calls[0]
    assert call.headers["authorization"] == f"Token {KEY}"
    assert call.body == {"text": "Thanks for calling."}
    assert call.params["container"] == ["none"] and call.params["sample_rate"] == ["24000"]
    assert call.params["model"] == ["aura-2-thalia-en"] and call.params["encoding"] == ["linear16"]
    assert len(chunks) > 1
    # The server splits the body at odd byte counts: samples are joined across chunks, none lost.
    assert np.array_equal(np.concatenate(chunks), dg.tone_for("Thanks for calling.", 24_000))
    assert dg.speak_calls == []


async def test_deepgram_tts_rest_bad_key_is_provider_unavailable() -> None:
    async with DeepgramLocal() as dg:
        synth = DeepgramSynthesizer("wrong-key", base_url=dg.url, transport="rest")
        with pytest.raises(ProviderUnavailable, match=r"401.*Invalid credentials"):
            await say(synth, "Hello.")
        await synth.aclose()


async def test_deepgram_tts_unreachable_is_provider_unavailable() -> None:
    for transport in ("websocket", "rest"):
        synth = DeepgramSynthesizer(KEY, base_url="http://127.0.0.1:9", transport=transport)
        with pytest.raises(ProviderUnavailable, match="could not be reached"):
            await say(synth, "Hello.")
        await synth.aclose()


def test_deepgram_tts_options_and_registry() -> None:
    import parley.stack  # noqa: F401  (registers the built-in providers)

    with pytest.raises(OptionsError):
        validate_options("tts", "deepgram", {"model": "not-aura"})
    with pytest.raises(OptionsError, match="mulaw comes at sample_rate 8000 or 16000"):
        validate_options("tts", "deepgram", {"encoding": "mulaw", "sample_rate": 24000})
    assert validate_options("tts", "deepgram", {"model": "aura-2-celeste-es"}) == {
        "model": "aura-2-celeste-es"
    }
    entry = provider("tts", "deepgram")
    options = DeepgramTtsOptions(api_key_secret="DG", transport="rest")
    built = entry.factory(
        BuildRequest(options, Settings(deepgram_base_url="https://dg.internal"), {"DG": "k"})
    )
    assert isinstance(built, DeepgramSynthesizer)
    assert built.transport == "rest" and built.base_url == "https://dg.internal"
