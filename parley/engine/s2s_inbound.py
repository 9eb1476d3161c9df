"""The caller's audio on its way to a speech-to-speech provider: resampled to the provider's rate, with
where each frame fell on our clock.

The provider reports its voice activity as positions (ms) in the audio it was sent, not as times; the
timeline needs times. Remembering the recent frames' stamps turns one into the other.
"""

from __future__ import annotations

from collections import deque

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.resample import Resampler
from parley.engine.events import now

__all__ = ["InboundAudio"]


class InboundAudio:
    def __init__(self, provider_rate: int) -> None:
        self._provider_rate = provider_rate
        self._input_rate: int | None = None
        self._resampler: Resampler | None = None
        self._sent: deque[tuple[float, float]] = deque(maxlen=3000)
        """(position in ms of the audio sent, its frame's timestamp) for the last minute or so of frames:
        where the provider's voice activity positions fall on our clock."""
        self._sent_ms = 0.0

    def convert(self, frame: AudioFrame) -> PCM16:
        """``frame`` at the provider's rate (maybe empty while the resampler fills), its position noted."""
        if frame.sample_rate != self._input_rate:
            self._input_rate = frame.sample_rate
            rate = self._provider_rate
            self._resampler = Resampler(frame.sample_rate, rate) if frame.sample_rate != rate else None
        pcm = self._resampler.process(frame.pcm) if self._resampler else frame.pcm
        self._sent.append((self._sent_ms, frame.timestamp))
        self._sent_ms += len(frame.pcm) * 1000 / frame.sample_rate
        return pcm

    def when(self, at_ms: int | None) -> float:
        """The time on our clock of a position (ms) in the audio sent to the provider; now if unknown."""
        if at_ms is None:
            return now()
        for start_ms, stamp in reversed(self._sent):
            if start_ms <= at_ms:
                return min(now(), stamp + (at_ms - start_ms) / 1000)
        return now()
