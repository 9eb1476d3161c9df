"""How long a pause must last before the user's turn is over, judged from the audio and the words."""

from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np

from parley.audio.frame import PCM16
from parley.engine.agent import EndpointingSettings
from parley.engine.turn_text import text_completeness

TURN_MODEL_SECONDS = 8.0


class EndOfTurnModel(Protocol):
    def probability_complete(self, pcm: PCM16) -> float:
        """Blocking: chance that 16 kHz speech ending here is a finished turn."""
        ...


class TurnPolicy:
    """Maps completeness evidence to a required silence.

    A clearly finished turn ends after ``min_silence_ms``; an unsure one after ``unsure_silence_ms``; one
    that sounds or reads unfinished ("what's the weather in...") after ``max_silence_ms``.
    """

    def __init__(self, settings: EndpointingSettings, model: EndOfTurnModel | None = None) -> None:
        self.settings = settings
        self.model = model

    async def acoustic(self, audio: PCM16) -> float | None:
        """The audio model's verdict on the turn so far (None without a model). Runs off the loop."""
        if self.model is None:
            return None
        tail = np.ascontiguousarray(audio[-int(TURN_MODEL_SECONDS * 16000) :])
        return await asyncio.to_thread(self.model.probability_complete, tail)

    @staticmethod
    def completeness(text: str, acoustic: float | None) -> float:
        textual = text_completeness(text)
        return textual if acoustic is None else 0.5 * textual + 0.5 * acoustic

    def required_silence(self, completeness: float) -> float:
        s = self.settings
        if not s.semantic:
            return s.unsure_silence_ms / 1000
        if completeness >= 0.7:
            return s.min_silence_ms / 1000
        if completeness >= 0.4:
            return s.unsure_silence_ms / 1000
        return s.max_silence_ms / 1000
