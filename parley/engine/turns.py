"""How long a pause must last before the user's turn is over, judged from the audio and the words."""

from __future__ import annotations

import asyncio
from typing import Protocol

import numpy as np

from parley.audio.frame import PCM16
from parley.engine.agent import EndpointingSettings
from parley.engine.turn_text import text_completeness

TURN_MODEL_SECONDS = 8.0
PAUSE_FACTOR = 1.5
"""How much longer than the longest pause a caller went on after the agent waits before it answers: one
speaker's pauses vary widely, so a fixed margin over the one seen is too thin."""


class EndOfTurnModel(Protocol):
    def probability_complete(self, pcm: PCM16) -> float:
        """Blocking: chance that 16 kHz speech ending here is a finished turn."""
        ...


class TurnPolicy:
    """Maps completeness evidence to a required silence.

    A clearly finished turn ends after ``min_silence_ms``; an unsure one after ``unsure_silence_ms``; one
    that sounds or reads unfinished ("what's the weather in...") after ``max_silence_ms``.

    Neither the words nor the sound can tell "Can I speak to someone?" said as a whole question from the
    same words followed by a pause and "about my bill": only time can. So the policy learns each caller's
    own pauses: once they have gone on after a pause, no turn of theirs ends on a shorter silence than
    half as long again as that pause (at most ``unsure_silence_ms``, so a slow talker never makes the agent
    sluggish past what an unsure turn costs anyway).
    """

    def __init__(self, settings: EndpointingSettings, model: EndOfTurnModel | None = None) -> None:
        self.settings = settings
        self.model = model
        self.learned_floor = 0.0
        """Seconds: the shortest silence that may end this caller's turns, from the pauses they made."""

    def observe_pause(self, seconds: float) -> None:
        """The caller went on speaking after ``seconds`` of silence within one turn."""
        s = self.settings
        if not s.learn_pauses or seconds <= 0:
            return
        cap = max(s.min_silence_ms, s.unsure_silence_ms) / 1000
        self.learned_floor = max(self.learned_floor, min(seconds * PAUSE_FACTOR, cap))

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
            return max(s.min_silence_ms / 1000, self.learned_floor)
        if completeness >= 0.4:
            return max(s.unsure_silence_ms / 1000, self.learned_floor)
        return s.max_silence_ms / 1000
