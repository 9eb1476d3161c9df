"""The speech-synthesis Protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from parley.audio.frame import PCM16


class SpeechSynthesizer(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[PCM16]:
        """Yield mono int16 chunks at ``sample_rate`` as soon as each is ready.

        Cancelling the consumer stops synthesis; the event loop is never blocked by model work.
        """
        ...

    async def warm_up(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CharTiming:
    """When one character of a synthesized text sounds: seconds from the start of that text's audio."""

    char: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class AlignedChunk:
    """A chunk of audio and the timings of the characters that arrived with it (possibly none)."""

    pcm: PCM16
    chars: tuple[CharTiming, ...] = ()


@runtime_checkable
class AlignedSynthesizer(SpeechSynthesizer, Protocol):
    """A voice that says which characters its audio carries, so a barge-in keeps exactly what was heard
    (not a guess in proportion to the clause's length)."""

    def synthesize_aligned(self, text: str) -> AsyncIterator[AlignedChunk]:
        """Like ``synthesize``, each chunk with the character timings that came with it."""
        ...


def played_text(timings: Sequence[CharTiming], seconds: float) -> str:
    """The characters that had finished sounding ``seconds`` into the text's audio, in order."""
    played: list[str] = []
    for timing in timings:
        if timing.end > seconds + 1e-9:
            break
        played.append(timing.char)
    return "".join(played)
