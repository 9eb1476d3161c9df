"""Piper, the default voice: real audio, streamed per sentence, and it stops when told."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import numpy as np
import pytest

from parley.audio.frame import PCM16
from parley.providers.tts.base import SpeechSynthesizer
from parley.providers.tts.piper import PiperSynthesizer

pytestmark = pytest.mark.models

SENTENCE = (
    "Thanks for calling, I can help you book a table for tonight, "
    "and I will send the confirmation to your phone."
)  # 20 words


@pytest.fixture(scope="module")
def piper() -> Iterator[PiperSynthesizer]:
    synthesizer = PiperSynthesizer()
    yield synthesizer
    synthesizer.close()


async def collect(tts: SpeechSynthesizer, text: str) -> list[PCM16]:
    return [chunk async for chunk in tts.synthesize(text)]


def rms(pcm: PCM16) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


async def test_speaks_a_sentence_of_plausible_length(piper: PiperSynthesizer) -> None:
    assert piper.sample_rate == 22_050
    audio = np.concatenate(await collect(piper, SENTENCE))
    assert audio.dtype == np.int16
    seconds = audio.size / piper.sample_rate
    assert 4.0 < seconds < 12.0  # 20 words at 100-300 words per minute
    assert rms(audio) > 500  # clearly audible, not silence
    assert np.abs(audio.astype(np.int32)).max() < 32767  # natural level, not clipped


async def test_yields_one_chunk_per_sentence(piper: PiperSynthesizer) -> None:
    chunks = await collect(piper, "Hello there. How can I help? Let me check that for you.")
    assert len(chunks) == 3
    assert all(c.size > 0.3 * piper.sample_rate for c in chunks)


async def test_length_scale_slows_speech_down(piper: PiperSynthesizer) -> None:
    # Piper samples each word's length, so one take of five words varies by about 10 %: three each.
    async def samples(tts: PiperSynthesizer) -> int:
        return sum([np.concatenate(await collect(tts, "One two three four five.")).size for _ in range(3)])

    slow = PiperSynthesizer(length_scale=1.6)
    try:
        slower = await samples(slow)
    finally:
        slow.close()
    assert slower > 1.25 * await samples(piper)  # about 1.45 in 72 pairs of takes


async def test_empty_text_yields_nothing(piper: PiperSynthesizer) -> None:
    assert await collect(piper, "  ") == []


async def test_cancelling_stops_after_the_current_sentence(piper: PiperSynthesizer) -> None:
    await piper.warm_up()
    text = " ".join(f"This is sentence number {n} of a long answer nobody will hear." for n in range(12))
    first_chunk = asyncio.Event()

    async def speak() -> None:
        async for _chunk in piper.synthesize(text):
            first_chunk.set()

    before = piper.sentences_synthesized
    task = asyncio.create_task(speak())
    await asyncio.wait_for(first_chunk.wait(), timeout=10)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The next reply is not stuck behind the abandoned one.
    reply = await collect(piper, "Sure.")
    assert reply and time.monotonic() - cancelled_at < 3.0
    # At most the sentence that was already running when the consumer left, plus the prefetched one.
    assert piper.sentences_synthesized - before <= 3 + 1  # + "Sure."


async def test_a_consumer_that_stops_reading_stops_synthesis(piper: PiperSynthesizer) -> None:
    text = " ".join(f"Sentence {n} is here." for n in range(10))
    before = piper.sentences_synthesized
    stream = piper.synthesize(text)
    await anext(stream)
    await stream.aclose()
    await asyncio.sleep(0.5)  # anything still running would finish here
    assert piper.sentences_synthesized - before <= 2
