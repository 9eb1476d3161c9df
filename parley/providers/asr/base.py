"""The speech-recognition Protocol every ASR engine implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from parley.audio.frame import PCM16


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    start: float
    """Seconds from the start of the utterance's audio."""
    end: float
    probability: float = 1.0


@dataclass(frozen=True, slots=True)
class Transcript:
    """A recognition result for the audio pushed so far in one utterance."""

    text: str
    is_final: bool
    confidence: float = 1.0
    start: float = 0.0
    """Seconds from the start of the utterance's audio."""
    end: float = 0.0
    words: tuple[Word, ...] = field(default_factory=tuple)
    audio_seconds: float = 0.0
    """How much audio this result covers (for usage and cost)."""
    language: str | None = None
    """The language the audio was heard in (ISO 639-1), when the recogniser says: detected, or set."""
    language_probability: float | None = None
    """How sure a detection was (0-1, among the languages it chose from); None when it was set."""


@runtime_checkable
class SetsLanguage(Protocol):
    """A recognition stream that can be told the caller's language once it is known (a call whose
    language was detected on its first turn): no more detecting, and no drifting to another."""

    def set_language(self, language: str) -> None: ...


class RecognitionStream(Protocol):
    """One utterance's worth of recognition.

    ``push`` never blocks the event loop. ``interim`` returns a fresh best guess for the audio so far
    (engines that stream natively return their latest result). ``finalize`` returns the final transcript
    of everything pushed and resets the stream for the next utterance.
    """

    async def push(self, pcm: PCM16) -> None: ...

    async def interim(self) -> Transcript: ...

    async def finalize(self) -> Transcript: ...

    async def aclose(self) -> None: ...


MAX_VOCABULARY = 50
MAX_VOCABULARY_CHARS = 400


def check_vocabulary(vocabulary: Sequence[str]) -> tuple[str, ...]:
    """Terms a stream should expect (names, products), trimmed and bounded: tenant data, never unbounded."""
    terms = tuple(dict.fromkeys(t.strip() for t in vocabulary if t.strip()))
    if len(terms) > MAX_VOCABULARY or sum(len(t) for t in terms) > MAX_VOCABULARY_CHARS:
        raise ValueError(
            f"a vocabulary holds at most {MAX_VOCABULARY} terms and {MAX_VOCABULARY_CHARS} characters"
        )
    return terms


class SpeechRecognizer(Protocol):
    """An ASR engine: a factory of recognition streams at a fixed input sample rate."""

    name: str
    sample_rate: int

    def open_stream(self, vocabulary: Sequence[str] = ()) -> RecognitionStream:
        """A stream for one speaker; ``vocabulary`` names words it should expect (company and product
        names a recogniser would otherwise spell as common words: "HubSpot", not "help spot")."""
        ...

    async def warm_up(self) -> None: ...
