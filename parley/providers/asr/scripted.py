"""A deterministic stand-in recognizer for fast tests: it "hears" the lines of a script, in order.

Each ``finalize`` returns the next line whatever the audio was; ``interim`` reveals one more word of
that line per ``seconds_per_word`` of audio pushed, so tests can drive interim-dependent logic
(barge-in on words, live analysis) with exact timing.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np

from parley.audio.frame import PCM16
from parley.providers.asr.base import Transcript, check_vocabulary


class ScriptExhaustedError(RuntimeError):
    """``finalize`` was called more often than the script has lines."""


class ScriptedRecognizer:
    """Streams of one recognizer share the script, so the lines are consumed in conversation order."""

    name = "scripted"

    def __init__(
        self,
        lines: list[str],
        sample_rate: int = 16_000,
        seconds_per_word: float = 0.3,
        *,
        language: str | None = None,
    ) -> None:
        if seconds_per_word <= 0:
            raise ValueError(f"seconds_per_word must be positive, got {seconds_per_word}")
        self.sample_rate = sample_rate
        self.seconds_per_word = seconds_per_word
        self._lines = deque(lines)
        self._total = len(lines)
        self.language = language
        """The language every line is "heard" in, as a detecting recogniser would report it."""
        self.pinned: list[str] = []
        """Every language a stream was told to transcribe in (``set_language``)."""
        self.heard: list[Transcript] = []
        """Every final transcript returned so far."""
        self.vocabularies: list[tuple[str, ...]] = []
        """The vocabulary each stream was opened with (what a real recogniser would be biased towards)."""

    @property
    def remaining(self) -> int:
        return len(self._lines)

    def peek(self) -> str | None:
        return self._lines[0] if self._lines else None

    def take(self) -> str:
        if not self._lines:
            raise ScriptExhaustedError(
                f"ScriptedRecognizer ran out of lines: all {self._total} were already used; "
                "add a line for every utterance the test speaks"
            )
        return self._lines.popleft()

    def open_stream(self, vocabulary: Sequence[str] = ()) -> ScriptedStream:
        self.vocabularies.append(check_vocabulary(vocabulary))
        return ScriptedStream(self)

    async def warm_up(self) -> None:
        return None


class ScriptedStream:
    def __init__(self, recognizer: ScriptedRecognizer) -> None:
        self._recognizer = recognizer
        self._samples = 0
        self._language: str | None = None

    def set_language(self, language: str) -> None:
        self._language = language
        self._recognizer.pinned.append(language)

    @property
    def _seconds(self) -> float:
        return self._samples / self._recognizer.sample_rate

    async def push(self, pcm: PCM16) -> None:
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"push needs 1-D int16 samples, got {pcm.dtype} with shape {pcm.shape}")
        self._samples += int(pcm.size)

    async def interim(self) -> Transcript:
        """The first ``audio_seconds // seconds_per_word`` words of the next line, at most all of them."""
        line = self._recognizer.peek() or ""
        words = line.split()
        shown = min(len(words), int(self._seconds / self._recognizer.seconds_per_word + 1e-9))
        seconds = self._seconds
        return Transcript(" ".join(words[:shown]), is_final=False, end=seconds, audio_seconds=seconds)

    async def finalize(self) -> Transcript:
        seconds = self._seconds
        self._samples = 0
        language = self._language or self._recognizer.language
        result = Transcript(
            self._recognizer.take(),
            is_final=True,
            end=seconds,
            audio_seconds=seconds,
            language=language,
            language_probability=None if self._language or language is None else 0.9,
        )
        self._recognizer.heard.append(result)
        return result

    async def aclose(self) -> None:
        self._samples = 0
