"""The tone engine is the stand-in voice of every fast test, so its timing must be exact."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from parley.providers.tts.base import SpeechSynthesizer
from parley.providers.tts.tone import ToneSynthesizer


async def collect(tts: ToneSynthesizer, text: str) -> list[np.ndarray]:
    return [chunk async for chunk in tts.synthesize(text)]


async def test_length_is_exactly_proportional_to_the_text() -> None:
    tts = ToneSynthesizer(sample_rate=16_000, ms_per_char=50, chunk_ms=20)
    chunks = await collect(tts, "hello")  # 5 chars * 50 ms = 250 ms = 4000 samples
    assert sum(c.size for c in chunks) == 4000 == tts.samples_for("hello")
    assert tts.duration_for("hello") == pytest.approx(0.25)
    assert [c.size for c in chunks] == [320] * 12 + [160]  # 12 full 20 ms chunks and a 10 ms tail
    assert all(c.dtype == np.int16 for c in chunks)


async def test_tone_is_quiet_but_audible_and_repeatable() -> None:
    tts = ToneSynthesizer(amplitude=0.1)
    first = np.concatenate(await collect(tts, "same text"))
    second = np.concatenate(await collect(tts, "same text"))
    assert np.array_equal(first, second)
    peak = int(np.abs(first.astype(np.int32)).max())
    assert 3000 < peak <= 3277  # 10 % of full scale


async def test_empty_text_yields_nothing_and_texts_are_recorded() -> None:
    tts = ToneSynthesizer()
    assert await collect(tts, "   ") == []
    await collect(tts, " Hi there ")
    assert tts.texts == ["Hi there"]


async def test_cancellation_lands_between_chunks() -> None:
    tts = ToneSynthesizer(sample_rate=8000, ms_per_char=100, chunk_ms=10, chunk_delay=0.01)
    received: list[np.ndarray] = []

    async def consume() -> None:
        async for chunk in tts.synthesize("x" * 100):  # 10 s of audio, 1000 chunks
            received.append(chunk)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert 0 < len(received) < 50


async def test_first_chunk_delay_imitates_model_latency() -> None:
    tts = ToneSynthesizer(first_chunk_delay=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    stream = tts.synthesize("hi")
    await anext(stream)
    assert loop.time() - start >= 0.045
    await stream.aclose()


def test_satisfies_the_protocol() -> None:
    tts: SpeechSynthesizer = ToneSynthesizer(sample_rate=24_000)
    assert tts.sample_rate == 24_000


def test_rejects_sub_sample_settings() -> None:
    with pytest.raises(ValueError):
        ToneSynthesizer(sample_rate=8000, chunk_ms=0.01)
