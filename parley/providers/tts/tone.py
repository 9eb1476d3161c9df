"""A deterministic stand-in voice for fast tests: a quiet tone as long as the text.

Every character lasts exactly ``ms_per_char`` and chunks are exactly ``chunk_ms`` (the last may be
shorter), so tests can predict durations, chunk counts and playout positions to the sample.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import numpy as np

from parley.audio.frame import PCM16


class ToneSynthesizer:
    name = "tone"

    def __init__(
        self,
        sample_rate: int = 16_000,
        ms_per_char: float = 50.0,
        *,
        chunk_ms: float = 20.0,
        frequency: float = 440.0,
        amplitude: float = 0.1,
        first_chunk_delay: float = 0.0,
        chunk_delay: float = 0.0,
    ) -> None:
        """``first_chunk_delay``/``chunk_delay`` (seconds) imitate model latency for timing tests."""
        self.sample_rate = sample_rate
        self.samples_per_char = round(sample_rate * ms_per_char / 1000)
        self.chunk_samples = round(sample_rate * chunk_ms / 1000)
        if self.samples_per_char < 1 or self.chunk_samples < 1:
            raise ValueError("ms_per_char and chunk_ms must each cover at least one sample")
        self.frequency = frequency
        self.amplitude = amplitude
        self.first_chunk_delay = first_chunk_delay
        self.chunk_delay = chunk_delay
        self.texts: list[str] = []
        """Every text synthesized so far, in order (tests check what the agent said)."""

    def samples_for(self, text: str) -> int:
        """Exactly how many samples ``synthesize(text)`` yields in total."""
        return len(text.strip()) * self.samples_per_char

    def duration_for(self, text: str) -> float:
        return self.samples_for(text) / self.sample_rate

    def tone(self, num_samples: int) -> PCM16:
        t = np.arange(num_samples, dtype=np.float64) / self.sample_rate
        wave = self.amplitude * np.sin(2 * np.pi * self.frequency * t)
        return np.round(wave * 32767).astype(np.int16)

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        total = self.samples_for(text)
        if total == 0:
            return
        self.texts.append(text.strip())
        pcm = self.tone(total)
        for index, start in enumerate(range(0, total, self.chunk_samples)):
            # Always yield control, so a consumer's cancellation lands between chunks as with real engines.
            await asyncio.sleep(self.first_chunk_delay if index == 0 else self.chunk_delay)
            yield pcm[start : start + self.chunk_samples].copy()

    async def warm_up(self) -> None:
        return None
