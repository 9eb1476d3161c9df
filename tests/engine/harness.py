"""Fast, deterministic sessions: energy VAD, scripted ASR and LLM, tone TTS, real-time clock."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from parley.audio.frame import AudioFrame
from parley.audio.vad import EnergyVAD
from parley.engine.agent import AgentConfig, EndpointingSettings, ToolSettings
from parley.engine.events import EventType
from parley.engine.session import EngineStack, SessionOptions
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.tone import ToneSynthesizer
from parley.simulate import Conversation, SimulationResult, UserTurn

RATE = 16000


def speech(
    seconds: float, *, pause_at: float | None = None, pause: float = 0.0, level: float = 0.3
) -> AudioFrame:
    """A stand-in for speech the energy VAD hears: a tone burst, optionally with a silent gap."""
    t = np.arange(int(seconds * RATE)) / RATE
    tone = (level * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    if pause_at is not None:
        cut = int(pause_at * RATE)
        tone = np.concatenate([tone[:cut], np.zeros(int(pause * RATE), np.int16), tone[cut:]])
    pad = np.zeros(int(0.1 * RATE), np.int16)
    return AudioFrame(np.concatenate([pad, tone, pad]), RATE)


def agent(**overrides: object) -> AgentConfig:
    settings = {
        "public": True,  # served tests talk to it anonymously, as to the demo page's agent
        "endpointing": EndpointingSettings(min_silence_ms=200, unsure_silence_ms=500, max_silence_ms=900),
        "tools": [ToolSettings(name="end_call", description="Hang up.", side_effect=True)],
    }
    settings.update(overrides)
    return AgentConfig.model_validate(settings)


def stack(lines: Sequence[str], rules: Sequence[ScriptRule], ms_per_char: float = 40.0) -> EngineStack:
    return EngineStack(
        vad_factory=lambda: EnergyVAD(RATE, frame_ms=32, threshold_dbfs=-35.0),
        recognizer=ScriptedRecognizer(list(lines)),
        llm=ScriptedModel(rules),
        tts=ToneSynthesizer(sample_rate=RATE, ms_per_char=ms_per_char),
    )


async def converse(
    config: AgentConfig, engines: EngineStack, turns: list[UserTurn]
) -> tuple[Conversation, SimulationResult]:
    conversation = Conversation(config, engines, SessionOptions(interim_interval_s=None))
    result = await conversation.run(turns, answer_timeout_s=10)
    return conversation, result


def types(result: SimulationResult) -> list[EventType]:
    return [e.type for e in result.events]
