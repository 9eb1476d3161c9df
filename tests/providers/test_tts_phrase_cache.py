"""The phrase cache: a phrase said before comes back at once and identical; memory stays bounded."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import numpy as np
import pytest
from pydantic import BaseModel, ConfigDict, Field

from parley.audio.frame import PCM16
from parley.engine.agent import AgentConfig
from parley.providers import registry
from parley.providers.failover import FailoverSynthesizer
from parley.providers.options import PROVIDER_OPTIONS
from parley.providers.tts.phrase_cache import PhraseCache, PhraseStore
from parley.providers.tts.tone import ToneSynthesizer
from parley.stack import ProviderEntry, build_stack, register_provider


@pytest.fixture
def registry_snapshot() -> Iterator[None]:
    """Providers a test registers are forgotten after it."""
    entries = dict(registry._entries)
    options = {role: dict(table) for role, table in PROVIDER_OPTIONS.items()}
    yield
    registry._entries.clear()
    registry._entries.update(entries)
    for role, table in options.items():
        PROVIDER_OPTIONS[role].clear()
        PROVIDER_OPTIONS[role].update(table)


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


# --- one store for every voice of the process ------------------------------------------------------


async def test_voices_sharing_a_store_never_answer_with_each_other_s_audio() -> None:
    store = PhraseStore(max_bytes=10 * 1024 * 1024)
    low = PhraseCache(ToneSynthesizer(8000, 10.0, frequency=200.0), voice="tone:low", store=store)
    high = PhraseCache(ToneSynthesizer(8000, 10.0, frequency=900.0), voice="tone:high", store=store)
    a = await _audio(low, "Thanks for calling!")
    b = await _audio(high, "Thanks for calling!")
    assert not np.array_equal(a, b)
    assert np.array_equal(await _audio(low, "Thanks for calling!"), a)
    assert np.array_equal(await _audio(high, "Thanks for calling!"), b)
    assert (low.hits, high.hits) == (1, 1)
    assert store.size_bytes == low.size_bytes + high.size_bytes == a.nbytes + b.nbytes


async def test_the_byte_bound_holds_for_all_voices_together() -> None:
    one_phrase = CountingTone().samples_for("Phrase number one.") * 2
    store = PhraseStore(max_bytes=int(one_phrase * 3.5))
    voices = [PhraseCache(CountingTone(), voice=f"v{i}", store=store) for i in range(4)]
    for cache in voices:
        await _audio(cache, "Phrase number one.")
    assert store.size_bytes <= store.max_bytes
    assert "Phrase number one." not in voices[0], "the least recently used voice's phrase went first"
    assert all("Phrase number one." in cache for cache in voices[1:])


def test_every_tts_provider_the_stack_builds_gets_the_phrase_cache(registry_snapshot: None) -> None:
    """By construction: a voice registered later (a cloud provider, a plugin) and every fallback of a
    chain are cached, each under its own provider and options, in the process's one store."""

    class PlainOptions(BaseModel):
        model_config = ConfigDict(extra="forbid", frozen=True)
        pitch: int = Field(300, ge=100, le=900)

    register_provider(
        ProviderEntry(
            "tts",
            "plain",
            lambda request: ToneSynthesizer(8000, frequency=request.options.pitch),
            PlainOptions,
        )
    )
    agent = AgentConfig.model_validate(
        {
            "vad": {"provider": "energy"},
            "asr": {"provider": "scripted"},
            "llm": {"provider": "scripted"},
            "tts": {
                "provider": "plain",
                "options": {"pitch": 200},
                "fallbacks": [{"provider": "plain", "options": {"pitch": 800}}, {"provider": "tone"}],
            },
        }
    )
    tts = build_stack(agent).tts
    assert isinstance(tts, FailoverSynthesizer)
    caches = [link.engine for link in tts.links]
    assert all(isinstance(c, PhraseCache) for c in caches)
    voices = [c.voice for c in caches if isinstance(c, PhraseCache)]
    assert len(set(voices)) == 3 and "plain" in voices[0] and "200" in voices[0] and "800" in voices[1]
    stores = {id(c.store) for c in caches if isinstance(c, PhraseCache)}
    assert len(stores) == 1
    plain = AgentConfig.model_validate({**agent.model_dump(), "tts": {"provider": "plain"}})
    assert isinstance(build_stack(plain).tts, PhraseCache)
