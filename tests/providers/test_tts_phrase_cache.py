"""The phrase cache: a phrase said before comes back at once and identical; memory stays bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from parley.audio.frame import PCM16
from parley.providers.tts.phrase_cache import PhraseCache
from parley.providers.tts.tone import ToneSynthesizer


class CountingTone(ToneSynthesizer):
    def __init__(self) -> None:
        super().__init__(sample_rate=8000, ms_per_char=10.0)
        self.calls: list[str] = []

    async def synthesize(self, text: str) -> AsyncIterator[PCM16]:  # type: ignore[override]
        self.calls.append(text)
        async for chunk in super().synthesize(text):
            yield chunk


async def _audio(tts: PhraseCache, text: str) -> PCM16:
    return np.concatenate([chunk async for chunk in tts.synthesize(text)])


async def test_a_repeated_phrase_is_synthesized_once_and_sounds_the_same() -> None:
    inner = CountingTone()
    cache = PhraseCache(inner)
    first = await _audio(cache, "Thanks for calling!")
    again = await _audio(cache, "Thanks for calling!")
    assert inner.calls == ["Thanks for calling!"]
    assert np.array_equal(first, again)
    assert (cache.hits, cache.misses) == (1, 1)


async def test_a_phrase_cut_off_mid_synthesis_is_not_kept() -> None:
    inner = CountingTone()
    cache = PhraseCache(inner)
    stream = cache.synthesize("A long answer that the caller interrupted halfway through.")
    await anext(stream)
    await stream.aclose()
    assert "A long answer that the caller interrupted halfway through." not in cache
    assert cache.size_bytes == 0


async def test_memory_is_bounded_least_recently_used_first_out() -> None:
    inner = CountingTone()
    one_phrase = inner.samples_for("Phrase number one.") * 2
    cache = PhraseCache(inner, max_bytes=int(one_phrase * 2.5))
    for text in ("Phrase number one.", "Phrase number two.", "Phrase number one.", "Phrase number six."):
        await _audio(cache, text)
    assert "Phrase number one." in cache  # used again, so kept
    assert "Phrase number two." not in cache
    assert cache.size_bytes <= cache.max_bytes


async def test_one_off_long_texts_are_not_cached_and_warm_fills_ahead() -> None:
    inner = CountingTone()
    cache = PhraseCache(inner, max_chars=20)
    await _audio(cache, "This sentence is longer than twenty characters.")
    assert cache.size_bytes == 0
    await cache.warm(["Hello!", "Hello!", ""])
    assert inner.calls.count("Hello!") == 1 and "Hello!" in cache
