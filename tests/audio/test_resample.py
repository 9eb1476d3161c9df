"""Resampling keeps what people hear (pitch, loudness, length) and streams without bursts."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.audio.energy import rms_dbfs
from parley.audio.resample import Resampler, resample

ToneFactory = Callable[..., np.ndarray]  # the `tone` and `noise` fixtures from conftest

RATE_PAIRS = [(8000, 16000), (16000, 8000), (48000, 16000), (22050, 16000), (16000, 24000), (24000, 8000)]


def dominant_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.fft.rfftfreq(pcm.size, 1 / rate)[np.argmax(spectrum)])


def tone_snr(pcm: np.ndarray, freq: float, rate: int) -> float:
    """How clean a pure tone came out: fitted sine power over everything else, in dB."""
    n = np.arange(pcm.size)
    basis = np.stack([np.sin(2 * np.pi * freq * n / rate), np.cos(2 * np.pi * freq * n / rate)], axis=1)
    coeffs, *_ = np.linalg.lstsq(basis, pcm.astype(np.float64), rcond=None)
    fitted = basis @ coeffs
    return float(10 * np.log10(np.mean(fitted**2) / np.mean((pcm - fitted) ** 2)))


def stream(resampler: Resampler, pcm: np.ndarray, chunk: int) -> np.ndarray:
    parts = [resampler.process(pcm[i : i + chunk]) for i in range(0, pcm.size, chunk)]
    return np.concatenate([*parts, resampler.flush()])


def test_same_rate_is_identity(tone: ToneFactory) -> None:
    pcm = tone(440, 0.1, 16000)
    assert resample(pcm, 16000, 16000) is pcm
    r = Resampler(16000, 16000)
    assert r.is_identity
    assert np.array_equal(r.process(pcm), pcm)
    assert r.flush().size == 0


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
def test_one_shot_keeps_pitch_loudness_and_length(tone: ToneFactory, src: int, dst: int) -> None:
    pcm = tone(1000, 1.0, src, dbfs=-20)
    out = resample(pcm, src, dst)
    assert out.dtype == np.int16
    assert abs(out.size - dst) <= 1
    assert dominant_hz(out, dst) == pytest.approx(1000, abs=2)
    assert rms_dbfs(out[dst // 10 : -dst // 10]) == pytest.approx(-20, abs=0.2)
    assert tone_snr(out[dst // 10 : -dst // 10], 1000, dst) > 60


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
def test_stream_keeps_pitch_loudness_and_length(tone: ToneFactory, src: int, dst: int) -> None:
    pcm = tone(1000, 1.0, src, dbfs=-20)
    out = stream(Resampler(src, dst), pcm, src // 50)
    assert abs(out.size - dst) <= 1
    assert dominant_hz(out, dst) == pytest.approx(1000, abs=2)
    assert rms_dbfs(out[dst // 10 : -dst // 10]) == pytest.approx(-20, abs=0.2)
    assert tone_snr(out[dst // 10 : -dst // 10], 1000, dst) > 60, "the tone must come out undistorted"


@pytest.mark.parametrize("stream_it", [False, True])
def test_downsampling_removes_what_the_new_rate_cannot_carry(tone: ToneFactory, stream_it: bool) -> None:
    # A 6 kHz whistle cannot exist at 8 kHz; without filtering it would fold back as an audible 2 kHz tone.
    pcm = tone(6000, 1.0, 16000, dbfs=-10)
    out = stream(Resampler(16000, 8000), pcm, 320) if stream_it else resample(pcm, 16000, 8000)
    assert rms_dbfs(out[800:-800]) < -70


@pytest.mark.parametrize(("src", "dst"), RATE_PAIRS)
def test_stream_releases_steady_amounts_with_bounded_latency(src: int, dst: int) -> None:
    r = Resampler(src, dst)
    chunk = np.zeros(src // 50, dtype=np.int16)  # 20 ms
    sizes = [r.process(chunk).size for _ in range(60)]
    per_chunk = dst / 50
    # After the filter has filled, every 20 ms in gives 20 ms out: no bursts for the playout clock.
    assert all(abs(size - per_chunk) <= 1 for size in sizes[5:])
    assert 0 < r.latency <= 0.035


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 700), min_size=1, max_size=30), st.sampled_from(RATE_PAIRS))
def test_stream_output_does_not_depend_on_chunking(chunk_sizes: list[int], rates: tuple[int, int]) -> None:
    src, dst = rates
    rng = np.random.default_rng(len(chunk_sizes))
    pcm = (rng.standard_normal(sum(chunk_sizes)) * 3000).astype(np.int16)
    whole = Resampler(src, dst)
    expected = np.concatenate([whole.process(pcm), whole.flush()])
    pieces = Resampler(src, dst)
    bounds = np.cumsum(chunk_sizes)[:-1]
    got = np.concatenate([*(pieces.process(p) for p in np.split(pcm, bounds)), pieces.flush()])
    assert np.array_equal(got, expected)


def test_reset_starts_a_fresh_stream(tone: ToneFactory) -> None:
    pcm = tone(300, 0.2, 8000)
    r = Resampler(8000, 16000)
    first = stream(r, pcm, 160)
    r.process(tone(3000, 0.05, 8000))
    r.reset()
    assert r.latency == 0
    assert np.array_equal(stream(r, pcm, 160), first)


def test_bad_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="positive"):
        Resampler(0, 16000)
    with pytest.raises(ValueError, match="int16"):
        resample(np.zeros(10, dtype=np.float32), 8000, 16000)
    with pytest.raises(ValueError, match="int16"):
        Resampler(8000, 16000).process(np.zeros((2, 5), dtype=np.int16))


def test_phone_audio_goes_up_to_16k_with_almost_no_delay(tone: ToneFactory) -> None:
    """8 kHz phone audio feeds 16 kHz recognisers: every ms held back delays each turn end and barge-in."""
    r = Resampler(8000, 16000)
    for _ in range(10):
        r.process(np.zeros(160, dtype=np.int16))
    assert 0 < r.latency <= 0.003
    # the top of the phone band does not come back mirrored above 4 kHz
    out = stream(Resampler(8000, 16000), tone(3400, 1.0, 8000, dbfs=-10), 160)
    spectrum = np.abs(np.fft.rfft(out[1600:-1600].astype(np.float64) * np.hanning(out.size - 3200)))
    freqs = np.fft.rfftfreq(out.size - 3200, 1 / 16000)
    image = spectrum[np.argmin(np.abs(freqs - 4600))]
    assert 20 * np.log10(image / spectrum.max()) < -50
