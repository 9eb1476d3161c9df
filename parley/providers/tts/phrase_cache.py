"""A synthesizer that remembers whole phrases: greetings, fillers and prompts an agent says again and again.

A phone caller should hear the greeting at once, and a model that synthesizes in 100–300 ms cannot do that
on demand; a phrase said before comes back from memory instead. Only phrases synthesized to the end are
kept (a reply cut off by barge-in is not), and the cache is bounded in bytes, least recently used first out:
one bound for every voice of the process (``PhraseStore``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from parley.audio.frame import PCM16
from parley.providers.tts.base import AlignedChunk, AlignedSynthesizer, CharTiming, SpeechSynthesizer

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""About 8 minutes of 16 kHz speech."""
DEFAULT_MAX_CHARS = 240
"""Longer texts are one-off answers, not phrases worth keeping."""


@runtime_checkable
class WarmsPhrases(Protocol):
    """A voice that can say phrases ahead, so they come back at once when a call needs them."""

    async def warm(self, phrases: Iterable[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Phrase:
    pcm: PCM16
    timings: tuple[CharTiming, ...] = ()
    """Character timings, when the voice gave them (``AlignedSynthesizer``)."""


class PhraseStore:
    """Remembered phrases of many voices, bounded in bytes together: least recently used first out.

    A server holds one for every voice of every agent, so the bound is the process's, not a voice's.
    Entries are keyed by voice (provider, options, credentials) and text: one voice never answers with
    another's audio.
    """

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self._phrases: OrderedDict[tuple[str, str], _Phrase] = OrderedDict()
        self._bytes_by_voice: dict[str, int] = {}

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._phrases

    def get(self, voice: str, text: str) -> _Phrase | None:
        found = self._phrases.get((voice, text))
        if found is not None:
            self._phrases.move_to_end((voice, text))
        return found

    def put(self, voice: str, text: str, phrase: _Phrase) -> None:
        size = phrase.pcm.nbytes
        if size > self.max_bytes:
            return
        old = self._phrases.pop((voice, text), None)
        if old is not None:
            self._account(voice, -old.pcm.nbytes)
        self._phrases[(voice, text)] = phrase
        self._account(voice, size)
        while self.size_bytes > self.max_bytes:
            (dropped_voice, _), dropped = self._phrases.popitem(last=False)
            self._account(dropped_voice, -dropped.pcm.nbytes)

    def bytes_of(self, voice: str) -> int:
        return self._bytes_by_voice.get(voice, 0)

    def _account(self, voice: str, delta: int) -> None:
        self.size_bytes += delta
        left = self._bytes_by_voice.get(voice, 0) + delta
        if left:
            self._bytes_by_voice[voice] = left
        else:
            self._bytes_by_voice.pop(voice, None)


class PhraseCache:
    """Wraps a ``SpeechSynthesizer`` (one voice); same Protocol, so the engine does not know it is there.

    ``voice`` names the voice in a shared ``store`` (``parley.stack`` gives every TTS engine it builds
    one, keyed by provider and options); without a store the cache has its own, of ``max_bytes``.
    """

    def __init__(
        self,
        inner: SpeechSynthesizer,
        *,
        voice: str | None = None,
        store: PhraseStore | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if max_bytes <= 0 or max_chars <= 0:
            raise ValueError("max_bytes and max_chars must be positive")
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.voice = voice if voice is not None else f"{inner.name}@{id(inner):x}"
        self.store = store if store is not None else PhraseStore(max_bytes)
        self.max_chars = max_chars
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self.store.max_bytes

    @property
    def size_bytes(self) -> int:
        """What this voice's phrases take in the store."""
        return self.store.bytes_of(self.voice)

    def __contains__(self, text: str) -> bool:
        return (self.voice, text) in self.store

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        async with aclosing(self.synthesize_aligned(text)) as pieces:
            async for piece in pieces:
                yield piece.pcm

    async def synthesize_aligned(self, text: str) -> AsyncGenerator[AlignedChunk, None]:
        """A remembered phrase comes back with its character timings too (when the voice gave any)."""
        cached = self.store.get(self.voice, text)
        if cached is not None:
            self.hits += 1
            yield AlignedChunk(cached.pcm, cached.timings)
            return
        self.misses += 1
        keep = len(text) <= self.max_chars
        pieces: list[PCM16] = []
        timings: list[CharTiming] = []
        async with aclosing(_aligned(self.inner, text)) as fresh:
            async for piece in fresh:
                if keep:
                    pieces.append(piece.pcm)
                    timings.extend(piece.chars)
                yield piece
        if keep and pieces:  # reached only when the phrase was synthesized to its end
            self.store.put(self.voice, text, _Phrase(np.concatenate(pieces), tuple(timings)))

    async def warm(self, phrases: Iterable[str]) -> None:
        """Synthesize ``phrases`` now (at startup, or when a call is about to be answered)."""
        for text in phrases:
            if text and text not in self:
                async for _ in self.synthesize(text):
                    pass

    async def warm_up(self) -> None:
        await self.inner.warm_up()


async def _aligned(voice: SpeechSynthesizer, text: str) -> AsyncGenerator[AlignedChunk, None]:
    """The voice's chunks with their character timings, or with none for a voice that gives none.
    Closed early, it closes the voice's stream at once (a remote voice's socket with it)."""
    if isinstance(voice, AlignedSynthesizer):
        aligned = voice.synthesize_aligned(text)
        try:
            async for piece in aligned:
                yield piece
        finally:
            await _aclose(aligned)
        return
    plain = voice.synthesize(text)
    try:
        async for chunk in plain:
            yield AlignedChunk(chunk)
    finally:
        await _aclose(plain)


async def _aclose(stream: AsyncIterator[object]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
