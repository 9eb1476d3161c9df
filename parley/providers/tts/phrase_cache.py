"""A synthesizer that remembers whole phrases: greetings, fillers and prompts an agent says again and again.

A phone caller should hear the greeting at once, and a model that synthesizes in 100–300 ms cannot do that
on demand; a phrase said before comes back from memory instead. Only phrases synthesized to the end are
kept (a reply cut off by barge-in is not), and the cache is bounded in bytes, least recently used first out.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable

import numpy as np

from parley.audio.frame import PCM16
from parley.providers.tts.base import SpeechSynthesizer

DEFAULT_MAX_BYTES = 16 * 1024 * 1024
"""About 8 minutes of 16 kHz speech per voice."""
DEFAULT_MAX_CHARS = 240
"""Longer texts are one-off answers, not phrases worth keeping."""


class PhraseCache:
    """Wraps a ``SpeechSynthesizer`` (one voice); same Protocol, so the engine does not know it is there."""

    def __init__(
        self,
        inner: SpeechSynthesizer,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        if max_bytes <= 0 or max_chars <= 0:
            raise ValueError("max_bytes and max_chars must be positive")
        self.inner = inner
        self.name = inner.name
        self.sample_rate = inner.sample_rate
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self._phrases: OrderedDict[str, PCM16] = OrderedDict()
        self.size_bytes = 0
        self.hits = 0
        self.misses = 0

    def __contains__(self, text: str) -> bool:
        return text in self._phrases

    async def synthesize(self, text: str) -> AsyncIterator[PCM16]:
        cached = self._phrases.get(text)
        if cached is not None:
            self.hits += 1
            self._phrases.move_to_end(text)
            yield cached
            return
        self.misses += 1
        keep = len(text) <= self.max_chars
        pieces: list[PCM16] = []
        async for chunk in self.inner.synthesize(text):
            if keep:
                pieces.append(chunk)
            yield chunk
        if keep and pieces:  # reached only when the phrase was synthesized to its end
            self._store(text, np.concatenate(pieces))

    async def warm(self, phrases: Iterable[str]) -> None:
        """Synthesize ``phrases`` now (at startup, or when a call is about to be answered)."""
        for text in phrases:
            if text and text not in self._phrases:
                async for _ in self.synthesize(text):
                    pass

    async def warm_up(self) -> None:
        await self.inner.warm_up()

    def _store(self, text: str, pcm: PCM16) -> None:
        if pcm.nbytes > self.max_bytes:
            return
        self._phrases[text] = pcm
        self.size_bytes += pcm.nbytes
        while self.size_bytes > self.max_bytes:
            _, dropped = self._phrases.popitem(last=False)
            self.size_bytes -= dropped.nbytes
