"""Speech start and pause decisions from per-frame VAD probabilities, with hysteresis."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Boundary(Enum):
    STARTED = "started"
    PAUSED = "paused"


@dataclass(frozen=True, slots=True)
class SpeechBoundary:
    kind: Boundary
    at: float
    """STARTED: time of the first voiced frame. PAUSED: end time of the last voiced frame."""


class Endpointer:
    """Frame-by-frame speech tracker.

    Speech starts after ``min_speech`` seconds of frames at or above ``start_threshold`` (a dip below
    ``stop_threshold`` resets the count); it pauses after ``pause`` seconds below ``stop_threshold``.
    Frames between the two thresholds keep the current state (hysteresis). Whether a pause ends the
    turn is not decided here: that takes the transcript and a turn model.
    """

    def __init__(
        self,
        start_threshold: float = 0.5,
        stop_threshold: float = 0.35,
        min_speech: float = 0.064,
        pause: float = 0.096,
    ) -> None:
        if stop_threshold > start_threshold:
            raise ValueError("stop_threshold must not exceed start_threshold")
        self.start_threshold = start_threshold
        self.stop_threshold = stop_threshold
        self.min_speech = min_speech
        self.pause = pause
        self.in_speech = False
        self.last_voiced_end = 0.0
        self._onset: float | None = None
        self._voiced = 0.0
        self._silence = 0.0
        self._last_voiced = False

    @property
    def silence(self) -> float:
        """Seconds since the last voiced frame while not in speech (0 during speech)."""
        return self._silence

    @property
    def starting(self) -> bool:
        """Voice has come back but is not yet ``min_speech`` long: the silence may be about to end.
        (Frames between the thresholds after it do not count: a noisy line must not hold a turn open.)"""
        return not self.in_speech and self._onset is not None and self._last_voiced

    def reset(self) -> None:
        self.in_speech = False
        self._onset = None
        self._voiced = 0.0
        self._silence = 0.0
        self._last_voiced = False

    def update(self, probability: float, timestamp: float, duration: float) -> SpeechBoundary | None:
        """Feed one frame's probability; returns a boundary when the frame crosses one."""
        voiced = probability >= self.start_threshold
        unvoiced = probability < self.stop_threshold
        self._last_voiced = voiced
        if not self.in_speech:
            if voiced:
                if self._onset is None:
                    self._onset = timestamp
                self._voiced += duration
                self.last_voiced_end = timestamp + duration
                if self._voiced >= self.min_speech:
                    self.in_speech = True
                    self._silence = 0.0
                    onset, self._onset, self._voiced = self._onset, None, 0.0
                    return SpeechBoundary(Boundary.STARTED, onset)
            elif unvoiced:
                self._onset = None
                self._voiced = 0.0
            self._silence += duration
            return None
        if unvoiced:
            self._silence += duration
            if self._silence >= self.pause:
                self.in_speech = False
                return SpeechBoundary(Boundary.PAUSED, self.last_voiced_end)
        else:
            self._silence = 0.0
            self.last_voiced_end = timestamp + duration
        return None
