"""The ElevenLabs voice against a local server speaking its input-streaming WebSocket protocol."""

from __future__ import annotations

import asyncio
import socket
from contextlib import aclosing
from typing import Any

import numpy as np
import pytest

from parley.config import Settings
from parley.providers.errors import ProviderUnavailable
from parley.providers.options import OptionsError, parse_options, validate_options
from parley.providers.registry import BuildRequest, provider
from parley.providers.tts.base import AlignedChunk, AlignedSynthesizer, CharTiming, played_text
from parley.providers.tts.elevenlabs import ElevenLabsSynthesizer
from parley.stack import ProviderError  # importing the stack registers the built-in providers
from tests.providers.elevenlabs.local_server import LocalElevenLabs

VOICE = "21m00Tcm4TlvDq8ikWAM"


def voice(server: LocalElevenLabs, **overrides: object) -> ElevenLabsSynthesizer:
    settings: dict[str, object] = {"base_url": server.url, "timeout_s": 5.0}
    settings.update(overrides)
    key = str(settings.pop("api_key", server.api_key))
    voice_id = str(settings.pop("voice_id", VOICE))
    return ElevenLabsSynthesizer(key, voice_id, **settings)  # type: ignore[arg-type]


async def collect(tts: ElevenLabsSynthesizer, text: str) -> list[AlignedChunk]:
    return [piece async for piece in tts.synthesize_aligned(text)]


def timings(pieces: list[AlignedChunk]) -> list[CharTiming]:
    return [t for piece in pieces for t in piece.chars]


async def test_elevenlabs_speaks_the_documented_protocol_and_streams_pcm_at_its_rate() -> None:
    text = "Hello there, how can I help?"
    async with LocalElevenLabs() as server:
        tts = voice(server, model="eleven_turbo_v2_5", voice_settings={"stability": 0.4, "speed": 1.1})
        assert isinstance(tts, AlignedSynthesizer)
        pieces = await collect(tts, text)

    (connection,) = server.connections
    assert connection.path == f"/v1/text-to-speech/{VOICE}/stream-input"
    assert connection.query["model_id"] == "eleven_turbo_v2_5"
    assert connection.query["output_format"] == "pcm_16000"
    assert connection.headers["xi-api-key"] == server.api_key
    opening, body, end = connection.messages
    assert opening["text"] == " " and "xi-api-key" not in opening, "the key travels in the header only"
    assert opening["voice_settings"] == {"stability": 0.4, "speed": 1.1}
    assert opening["generation_config"]["chunk_length_schedule"] == [50]
    assert body == {"text": text + " ", "flush": True}
    assert end == {"text": ""}
    assert connection.final_sent and not connection.closed_by_client_early

    assert len(pieces) == connection.chunks_sent > 1, "audio arrives chunk by chunk, as generated"
    pcm = np.concatenate([p.pcm for p in pieces])
    assert pcm.dtype == np.int16
    # 40 ms per character received (the clause and its trailing space), at 16 kHz: exactly.
    assert len(pcm) == (len(text) + 1) * 640
    assert np.abs(pcm).max() > 1000, "the audio is the server's tone, decoded from base64 PCM"


async def test_elevenlabs_at_24_khz_asks_for_pcm_24000_and_gets_24_khz_audio() -> None:
    async with LocalElevenLabs() as server:
        tts = voice(server, sample_rate=24000)
        pieces = await collect(tts, "Twenty four.")
    assert server.connections[0].query["output_format"] == "pcm_24000"
    assert tts.sample_rate == 24000
    total = sum(len(p.pcm) for p in pieces)
    assert total / 24000 == pytest.approx(len("Twenty four. ") * 0.040)


async def test_elevenlabs_alignment_is_rebased_onto_the_clause_so_a_cut_gives_the_characters_heard() -> None:
    text = "Our opening hours are nine to five."
    async with LocalElevenLabs(chars_per_chunk=4) as server:
        pieces = await collect(voice(server), text)
    chars = timings(pieces)
    assert "".join(t.char for t in chars) == text + " "
    # Each chunk's times start at zero on the wire; here they run on from the chunks before them.
    assert [t.start for t in chars] == pytest.approx([i * 0.040 for i in range(len(chars))])
    first_chunk_seconds = len(pieces[0].pcm) / 16000
    assert pieces[1].chars[0].start == pytest.approx(first_chunk_seconds)
    # 0.58 s in, 14 characters had been played (the 15th ends at 0.60 s): part of a word, exactly.
    assert played_text(chars, 0.58) == "Our opening ho"
    assert played_text(chars, 0.60) == "Our opening hou"
    assert played_text(chars, 0.0) == ""


async def test_a_wrong_elevenlabs_key_is_provider_unavailable() -> None:
    async with LocalElevenLabs() as server:
        with pytest.raises(ProviderUnavailable) as raised:
            await collect(voice(server, api_key="not-the-key"), "Hello.")
    assert raised.value.status == 401 and raised.value.provider == "elevenlabs"
    assert "invalid_api_key" in str(raised.value)
    assert server.connections == [], "refused at the handshake"


async def test_an_exceeded_elevenlabs_quota_is_provider_unavailable() -> None:
    async with LocalElevenLabs(quota_exceeded=True) as server:
        with pytest.raises(ProviderUnavailable, match="quota_exceeded"):
            await collect(voice(server), "Hello.")


async def test_an_unknown_elevenlabs_voice_is_provider_unavailable_with_the_reason() -> None:
    async with LocalElevenLabs() as server:
        with pytest.raises(ProviderUnavailable, match="voice_not_found"):
            await collect(voice(server, voice_id="NoSuchVoice123"), "Hello.")


async def test_an_unreachable_elevenlabs_is_provider_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    tts = ElevenLabsSynthesizer("key", VOICE, base_url=f"http://127.0.0.1:{port}", timeout_s=2.0)
    with pytest.raises(ProviderUnavailable, match="unreachable"):
        await collect(tts, "Hello.")


async def test_a_silent_elevenlabs_times_out_as_provider_unavailable() -> None:
    async with LocalElevenLabs(chunk_delay_s=30.0) as server:
        with pytest.raises(ProviderUnavailable, match="sent nothing"):
            await collect(voice(server, timeout_s=0.3), "Hello.")


async def test_closing_an_elevenlabs_stream_early_closes_its_socket() -> None:
    """A barge-in cancels the reply, which closes the voice's stream: the server sees the client go."""
    text = "This is a long clause that would take a while to generate in full."
    async with LocalElevenLabs(chunk_delay_s=0.05) as server:
        tts = voice(server)
        async with aclosing(tts.synthesize_aligned(text)) as stream:
            first = await anext(stream)
            assert len(first.pcm)
        (connection,) = server.connections
        await asyncio.wait_for(connection.closed.wait(), 5)
    assert connection.closed_by_client_early and not connection.final_sent
    assert connection.chunks_sent < len(text) / server.chars_per_chunk


async def test_cancelling_an_elevenlabs_synthesis_closes_its_socket() -> None:
    async with LocalElevenLabs(chunk_delay_s=0.05) as server:
        tts = voice(server)
        got_audio = asyncio.Event()

        async def speak() -> None:
            async for _ in tts.synthesize("A long answer that is cut off by the caller speaking."):
                got_audio.set()

        task = asyncio.create_task(speak())
        await asyncio.wait_for(got_audio.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.connections[0].closed.wait(), 5)
    assert server.connections[0].closed_by_client_early


def test_elevenlabs_options_are_an_allow_list_with_bounds() -> None:
    assert validate_options("tts", "elevenlabs", {"voice_id": "JBFqnCBsd6RMkjVDRZzb", "speed": 1.1}) == {
        "voice_id": "JBFqnCBsd6RMkjVDRZzb",
        "speed": 1.1,
    }
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"voice_id": "../../v1/user"}, "options.voice_id"),
        ({"model": "eleven_v3"}, "options.model"),
        ({"sample_rate": 44100}, "options.sample_rate"),
        ({"speed": 3.0}, "options.speed"),
        ({"base_url": "http://169.254.169.254"}, "options.base_url"),
    ]
    for bad, field in refusals:
        with pytest.raises(OptionsError) as refused:
            validate_options("tts", "elevenlabs", bad)
        assert refused.value.field == field


async def test_the_elevenlabs_voice_is_built_with_the_organizations_key() -> None:
    async with LocalElevenLabs() as server:
        host = Settings(elevenlabs_base_url=server.url)
        entry = provider("tts", "elevenlabs")
        options = parse_options("tts", "elevenlabs", {"api_key_secret": "ELEVEN", "stability": 0.5})
        assert entry.secret_names(options) == ["ELEVEN"]
        tts = entry.factory(BuildRequest(options, host, {"ELEVEN": server.api_key}))
        assert [c async for c in tts.synthesize("Hi.")]
        assert server.connections[0].messages[0]["voice_settings"] == {"stability": 0.5}
        with pytest.raises(ProviderError, match="PARLEY_ELEVENLABS_API_KEY"):
            entry.factory(BuildRequest(parse_options("tts", "elevenlabs", {}), host, {}))
