"""The OpenAI-compatible transcription recogniser against a local ``/v1/audio/transcriptions``."""

from __future__ import annotations

import numpy as np
import pytest

from parley.config import Settings
from parley.engine.events import EventType
from parley.providers.asr.openai_transcribe import OpenAITranscriber
from parley.providers.errors import ProviderUnavailable
from parley.providers.llm.scripted import ScriptRule
from parley.providers.openai_audio import audio_client
from parley.providers.options import parse_options
from parley.providers.registry import BuildRequest, provider
from parley.providers.tts.openai_tts import OpenAISynthesizer
from parley.simulate import UserTurn
from parley.stack import ProviderError, check_operator_policy
from tests.engine.harness import agent, converse, speech, stack
from tests.providers.openai.local_audio_server import LocalOpenAIAudio, serving

RATE = 16000


def recogniser(server: LocalOpenAIAudio, key: str | None = None, **options: object) -> OpenAITranscriber:
    model = str(options.pop("model", "gpt-4o-mini-transcribe"))
    client = audio_client(server.url, key or server.api_key, 5.0)
    return OpenAITranscriber(client, model, **options)  # type: ignore[arg-type]


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return np.round(0.2 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)


async def test_openai_transcription_sends_the_turn_as_one_wav_and_returns_its_text() -> None:
    async with serving(LocalOpenAIAudio(transcripts=["I'd like to book a table at HubSpot."])) as server:
        asr = recogniser(server, language="en", prompt="A restaurant's phone line.")
        stream = asr.open_stream(vocabulary=["HubSpot", "Parley"])
        for _ in range(50):  # one second, in 20 ms frames as the session pushes them
            await stream.push(tone(0.02))
        result = await stream.finalize()

    assert result.is_final and result.text == "I'd like to book a table at HubSpot."
    assert result.audio_seconds == pytest.approx(1.0)
    (request,) = server.transcriptions
    assert request.headers["authorization"] == f"Bearer {server.api_key}"
    assert request.fields == {
        "model": "gpt-4o-mini-transcribe",
        "language": "en",
        "prompt": "A restaurant's phone line. HubSpot, Parley.",
        "response_format": "json",
    }
    assert request.filename.endswith(".wav") and request.content_type == "audio/wav"
    assert (request.sample_rate, request.channels) == (16000, 1)
    assert request.seconds == pytest.approx(1.0)


async def test_each_openai_turn_is_its_own_request_and_an_empty_turn_makes_none() -> None:
    async with serving(LocalOpenAIAudio(transcripts=["Hello.", "Goodbye."])) as server:
        stream = recogniser(server, language=None).open_stream()
        await stream.push(tone(0.5))
        first = await stream.finalize()
        assert (await stream.finalize()).text == "", "nothing pushed since: no request"
        await stream.push(tone(0.3))
        second = await stream.finalize()
    assert (first.text, second.text) == ("Hello.", "Goodbye.")
    assert [round(r.seconds, 2) for r in server.transcriptions] == [0.5, 0.3]
    assert "language" not in server.transcriptions[0].fields, "null language: the model detects it"


async def test_openai_interims_cost_nothing_unless_asked_for() -> None:
    async with serving(LocalOpenAIAudio(transcripts=["Hello there", "Hello there, I need help."])) as server:
        quiet = recogniser(server).open_stream()
        await quiet.push(tone(0.6))
        guess = await quiet.interim()
        assert (guess.text, guess.is_final) == ("", False) and server.transcriptions == []

        eager = recogniser(server, interim=True).open_stream()
        await eager.push(tone(0.6))
        partial = await eager.interim()
        await eager.push(tone(0.6))
        final = await eager.finalize()
    assert (partial.text, partial.is_final) == ("Hello there", False)
    assert final.text == "Hello there, I need help."
    assert [round(r.seconds, 1) for r in server.transcriptions] == [0.6, 1.2], (
        "the interim sent the audio so far"
    )


async def test_openai_transcription_failures_are_provider_unavailable() -> None:
    async with serving(LocalOpenAIAudio()) as server:
        stream = recogniser(server, key="wrong").open_stream()
        await stream.push(tone(0.2))
        with pytest.raises(ProviderUnavailable) as refused:
            await stream.finalize()
        assert refused.value.status == 401
        server.quota_exceeded = True
        stream = recogniser(server).open_stream()
        await stream.push(tone(0.2))
        with pytest.raises(ProviderUnavailable) as quota:
            await stream.finalize()
        assert quota.value.status == 429
        server.quota_exceeded = False
        stream = recogniser(server, model="whisper-9").open_stream()
        await stream.push(tone(0.2))
        with pytest.raises(ProviderUnavailable, match="does not exist"):
            await stream.finalize()


def test_an_openai_transcription_model_the_operator_does_not_offer_is_refused() -> None:
    offered = Settings(openai_transcription_models=["whisper-1"])
    check_operator_policy(agent(asr={"provider": "openai", "options": {"model": "whisper-1"}}), offered)
    with pytest.raises(ProviderError, match="PARLEY_OPENAI_TRANSCRIPTION_MODELS"):
        check_operator_policy(agent(asr={"provider": "openai", "options": {}}), offered)


async def test_a_spoken_question_is_transcribed_by_openai_and_answered_in_an_openai_voice() -> None:
    """A call on the fast engines whose ears and voice are the OpenAI audio routes: the caller's turn
    goes out as one WAV, its text is answered, and the answer is spoken through /v1/audio/speech."""
    question = "What is the capital of France?"
    async with serving(LocalOpenAIAudio(transcripts=[question])) as server:
        host = Settings(openai_base_url=server.url, openai_api_key=server.api_key)
        asr_options = parse_options("asr", "openai", {"language": "en"})
        engines = stack([], [ScriptRule.say("capital", "Paris, of course.")])
        engines.recognizer = provider("asr", "openai").factory(BuildRequest(asr_options, host, {}))
        engines.tts = OpenAISynthesizer(audio_client(server.url, server.api_key, 5.0), "tts-1", "alloy")
        conv, result = await converse(agent(), engines, [UserTurn(speech(1.0))])

    turn = result.turns[0]
    assert turn.user_text == question and turn.agent_text == "Paris, of course."
    finals = [e.data["text"] for e in result.events if e.type is EventType.TRANSCRIPT_FINAL]
    assert finals == [question]
    assert len(server.transcriptions) == 1 and 1.0 <= server.transcriptions[0].seconds <= 1.6
    assert [r.body["input"] for r in server.speech] == ["Paris, of course."]
    assert conv.speaker.clips, "the answer reached the caller"
