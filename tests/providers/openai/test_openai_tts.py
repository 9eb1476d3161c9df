"""The OpenAI voice (official SDK, streamed PCM) against a local server speaking ``/v1/audio/speech``."""

from __future__ import annotations

import asyncio
import time
from contextlib import aclosing

import numpy as np
import pytest

from parley.config import Settings
from parley.providers.errors import ProviderRejected, ProviderUnavailable
from parley.providers.openai_audio import audio_client
from parley.providers.options import parse_options
from parley.providers.registry import BuildRequest, ProviderError, provider
from parley.providers.tts.openai_tts import OpenAISynthesizer
from parley.stack import check_operator_policy
from tests.engine.harness import agent
from tests.providers.openai.local_audio_server import LocalOpenAIAudio, serving


def voice(server: LocalOpenAIAudio, key: str | None = None, **overrides: object) -> OpenAISynthesizer:
    settings: dict[str, object] = {"model": "gpt-4o-mini-tts", "voice": "coral"}
    settings.update(overrides)
    model, name = str(settings.pop("model")), str(settings.pop("voice"))
    client = audio_client(server.url, key or server.api_key, 5.0)
    return OpenAISynthesizer(client, model, name, **settings)  # type: ignore[arg-type]


async def test_openai_speech_streams_24khz_pcm_as_it_is_generated() -> None:
    text = "Thanks for calling, how can I help?"
    async with serving(LocalOpenAIAudio(chunk_delay_s=0.05)) as server:
        tts = voice(server, speed=1.25, instructions="Warm and brisk.")
        arrivals: list[float] = []
        chunks = []
        async for chunk in tts.synthesize(text):
            arrivals.append(time.monotonic())
            chunks.append(chunk)

    (request,) = server.speech
    assert request.headers["authorization"] == f"Bearer {server.api_key}"
    assert request.body == {
        "model": "gpt-4o-mini-tts",
        "voice": "coral",
        "input": text,
        "response_format": "pcm",
        "speed": 1.25,
        "instructions": "Warm and brisk.",
    }
    assert tts.sample_rate == 24000
    pcm = np.concatenate(chunks)
    assert pcm.dtype == np.int16 and len(pcm) == round(len(text) * 0.040 * 24000)
    # The server cuts its body at odd byte offsets: samples are put back together, none is lost.
    assert np.abs(pcm).max() > 1000 and np.abs(np.diff(pcm.astype(np.int32))).max() < 2000
    assert len(chunks) > 5 and arrivals[-1] - arrivals[0] > 0.2, "played while the rest was generated"


async def test_openai_speech_leaves_out_options_not_set() -> None:
    async with serving(LocalOpenAIAudio()) as server:
        [chunk async for chunk in voice(server, model="tts-1", voice="alloy").synthesize("Hi.")]
    assert server.speech[0].body == {
        "model": "tts-1",
        "voice": "alloy",
        "input": "Hi.",
        "response_format": "pcm",
    }


async def test_a_wrong_openai_key_or_exhausted_quota_is_provider_unavailable() -> None:
    async with serving(LocalOpenAIAudio()) as server:
        with pytest.raises(ProviderUnavailable) as refused:
            [c async for c in voice(server, key="wrong").synthesize("Hello.")]
        assert refused.value.status == 401 and "Incorrect API key" in str(refused.value)
        server.quota_exceeded = True
        with pytest.raises(ProviderUnavailable) as quota:
            [c async for c in voice(server).synthesize("Hello.")]
        assert quota.value.status == 429 and "quota" in str(quota.value)


async def test_an_unknown_openai_voice_is_rejected_and_an_unknown_model_unavailable() -> None:
    async with serving(LocalOpenAIAudio()) as server:
        with pytest.raises(ProviderRejected) as bad_voice:
            [c async for c in voice(server, voice="nobody").synthesize("Hello.")]
        assert bad_voice.value.status == 400 and "Supported voices" in str(bad_voice.value)
        with pytest.raises(ProviderUnavailable) as bad_model:
            [c async for c in voice(server, model="tts-9").synthesize("Hello.")]
        assert bad_model.value.status == 404


async def test_closing_an_openai_speech_stream_early_ends_the_request() -> None:
    async with serving(LocalOpenAIAudio(chunk_delay_s=0.05)) as server:
        async with aclosing(voice(server).synthesize("A long sentence the caller will cut off.")) as stream:
            assert len(await anext(stream))
        await asyncio.wait_for(server.speech[0].ended.wait(), 5)
    assert server.speech[0].disconnected_early


async def test_the_openai_voice_is_built_from_agent_options_and_operator_settings() -> None:
    async with serving(LocalOpenAIAudio()) as server:
        host = Settings(openai_base_url=server.url, openai_tts_models=["tts-1"])
        options = parse_options("tts", "openai", {"model": "tts-1", "voice": "nova", "api_key_secret": "OAI"})
        entry = provider("tts", "openai")
        assert entry.secret_names(options) == ["OAI"]
        tts = entry.factory(BuildRequest(options, host, {"OAI": server.api_key}))
        audio = [c async for c in tts.synthesize("Hello.")]
        assert audio and server.speech[0].body["voice"] == "nova"
        with pytest.raises(ProviderError, match="no secret named 'OAI'"):
            entry.factory(BuildRequest(options, host, {}))
        mini = parse_options("tts", "openai", {"model": "gpt-4o-mini-tts"})
        with pytest.raises(ProviderError, match="PARLEY_OPENAI_TTS_MODELS"):
            entry.factory(BuildRequest(mini, host, {}))
    with pytest.raises(ProviderError, match=r"tts\.options\.model"):
        check_operator_policy(agent(tts={"provider": "openai", "options": {"model": "tts-9"}}), host)
