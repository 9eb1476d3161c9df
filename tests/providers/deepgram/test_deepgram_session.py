"""Whole calls on the fast engines with Deepgram's ear (and voice) against the local server."""

from __future__ import annotations

import numpy as np

from parley.audio.vad import EnergyVAD
from parley.engine.events import EventType
from parley.engine.session import EngineStack
from parley.providers.asr.deepgram import DeepgramRecognizer, ListenSettings
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.base import SpeechSynthesizer
from parley.providers.tts.deepgram import DeepgramSynthesizer
from parley.providers.tts.tone import ToneSynthesizer
from parley.simulate import UserTurn
from tests.engine.harness import RATE, agent, converse, speech, types
from tests.providers.deepgram.local_server import DeepgramLocal

KEY = "dg-local-key"


def deepgram_stack(dg: DeepgramLocal, rules: list[ScriptRule], tts: SpeechSynthesizer) -> EngineStack:
    return EngineStack(
        vad_factory=lambda: EnergyVAD(RATE, frame_ms=32, threshold_dbfs=-35.0),
        recognizer=DeepgramRecognizer(KEY, ListenSettings(), base_url=dg.url, keepalive_interval=0.5),
        llm=ScriptedModel(rules),
        tts=tts,
    )


async def test_deepgram_session_answers_a_spoken_question() -> None:
    async with DeepgramLocal(lines=["What time do you open tomorrow?"]) as dg:
        engines = deepgram_stack(
            dg,
            [ScriptRule.say("open", "We open at nine.")],
            ToneSynthesizer(sample_rate=RATE, ms_per_char=40),
        )
        _, result = await converse(agent(), engines, [UserTurn(speech(1.0))])
    turn = result.turns[0]
    assert turn.user_text == "What time do you open tomorrow?"
    assert turn.agent_text == "We open at nine."
    assert turn.v2v_ms is not None and turn.v2v_ms < 1500
    order = types(result)
    assert order.index(EventType.TRANSCRIPT_FINAL) < order.index(EventType.AGENT_AUDIO_STARTED)
    call = dg.listen_calls[0]
    assert "Finalize" in call.received and call.received[-1] == "CloseStream"
    assert call.close == (1000, "")


async def test_deepgram_session_hears_and_speaks_through_deepgram_for_two_turns() -> None:
    async with DeepgramLocal(lines=["Do you deliver?", "Great, thank you."]) as dg:
        voice = DeepgramSynthesizer(KEY, base_url=dg.url, sample_rate=24_000)
        rules = [ScriptRule.say("deliver", "Yes, every day."), ScriptRule.say("thank", "You're welcome.")]
        conversation, result = await converse(
            agent(), deepgram_stack(dg, rules, voice), [UserTurn(speech(0.8)), UserTurn(speech(0.8))]
        )
        await voice.settle()
        await voice.aclose()
    assert [t.user_text for t in result.turns] == ["Do you deliver?", "Great, thank you."]
    assert [t.agent_text for t in result.turns] == ["Yes, every day.", "You're welcome."]
    # One listening socket for the call; phrases spoken over the voice's pooled socket.
    assert len(dg.listen_calls) == 1
    assert dg.listen_calls[0].received.count("Finalize") >= 2
    spoken = [m["text"] for call in dg.speak_calls for m in call.received if m["type"] == "Speak"]
    assert spoken == ["Yes, every day.", "You're welcome."]
    assert voice.stats.sockets_opened == 1
    # What the caller heard is the voice's audio, resampled to the line: as long as the server made it.
    played = sum(clip.pcm.size for clip in conversation.speaker.clips)
    expected = (
        sum(dg.samples_for(text, 24_000) for text in spoken) * conversation.speaker.sample_rate / 24_000
    )
    assert abs(played - expected) / expected < 0.05
    assert np.any(np.concatenate([clip.pcm for clip in conversation.speaker.clips]))
