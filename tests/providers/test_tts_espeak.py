"""The espeak-ng fallback voice (needs the system package: apt-get install espeak-ng)."""

from __future__ import annotations

import asyncio
import shutil

import numpy as np
import pytest

from parley.audio.frame import PCM16
from parley.providers.tts.espeak import EspeakNotFoundError, EspeakSynthesizer

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed (apt-get install espeak-ng)"
)


async def collect(tts: EspeakSynthesizer, text: str) -> PCM16:
    chunks = [chunk async for chunk in tts.synthesize(text)]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


@needs_espeak
async def test_speaks_audible_audio_of_plausible_length() -> None:
    tts = EspeakSynthesizer()
    audio = await collect(tts, "Hello, this is the fallback voice speaking.")
    assert audio.dtype == np.int16
    seconds = audio.size / tts.sample_rate
    assert 1.0 < seconds < 6.0
    assert np.sqrt(np.mean(audio.astype(np.float64) ** 2)) > 300


@needs_espeak
async def test_rate_changes_the_duration() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    fast = await collect(EspeakSynthesizer(rate_wpm=300), text)
    slow = await collect(EspeakSynthesizer(rate_wpm=120), text)
    assert slow.size > 1.8 * fast.size


@needs_espeak
async def test_text_that_looks_like_an_option_is_spoken() -> None:
    audio = await collect(EspeakSynthesizer(), "--version and -h are words here")
    assert audio.size > 0.5 * EspeakSynthesizer.sample_rate


@needs_espeak
async def test_empty_text_yields_nothing() -> None:
    assert (await collect(EspeakSynthesizer(), " ")).size == 0


@needs_espeak
async def test_stopping_early_ends_the_program_promptly() -> None:
    tts = EspeakSynthesizer()
    stream = tts.synthesize("This is a very long answer. " * 40)
    first = await anext(stream)
    assert first.size > 0
    await asyncio.wait_for(stream.aclose(), timeout=2.0)


def test_a_missing_program_says_how_to_install_it() -> None:
    with pytest.raises(EspeakNotFoundError, match="apt-get install espeak-ng"):
        EspeakSynthesizer(program="espeak-ng-that-does-not-exist")
