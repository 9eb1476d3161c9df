"""The meter reads levels a person would agree with, finds the pitch of a voice, and does not flap."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from parley.audio.energy import (
    SILENCE_DBFS,
    EnergyEvent,
    EnergyMeter,
    LevelEvent,
    SpeechStateEvent,
    WindowFeatures,
    rms_dbfs,
)
from parley.audio.frame import AudioFrame

ToneFactory = Callable[..., np.ndarray]  # the `tone` and `noise` fixtures from conftest


def run(
    meter: EnergyMeter, pcm: np.ndarray, rate: int, chunk: int | None = None
) -> tuple[list[WindowFeatures], list[EnergyEvent]]:
    chunk = chunk or pcm.size
    windows: list[WindowFeatures] = []
    events: list[EnergyEvent] = []
    for i in range(0, pcm.size, chunk):
        update = meter.process(AudioFrame(pcm[i : i + chunk], rate, timestamp=i / rate))
        windows.extend(update.windows)
        events.extend(update.events)
    return windows, events


@pytest.mark.parametrize("rate", [8000, 16000])
@pytest.mark.parametrize("freq", [85.0, 120.0, 220.0, 330.0])
def test_pitch_of_a_tone_is_found(tone: ToneFactory, rate: int, freq: float) -> None:
    windows, _ = run(EnergyMeter(rate), tone(freq, 0.5, rate), rate)
    pitches = [w.pitch_hz for w in windows[2:]]  # the first windows lack two full periods of history
    assert all(p is not None and p == pytest.approx(freq, rel=0.02) for p in pitches)


def test_pitch_tracks_a_change_of_tone(tone: ToneFactory) -> None:
    pcm = np.concatenate([tone(150, 0.3, 16000), tone(250, 0.3, 16000)])
    windows, _ = run(EnergyMeter(16000), pcm, 16000)
    assert windows[10].pitch_hz == pytest.approx(150, rel=0.02)
    assert windows[-1].pitch_hz == pytest.approx(250, rel=0.02)


@pytest.mark.parametrize("dbfs", [-6.0, -20.0, -45.0])
def test_level_of_a_tone_reads_its_rms(tone: ToneFactory, dbfs: float) -> None:
    windows, _ = run(EnergyMeter(16000, window_ms=25), tone(200, 0.5, 16000, dbfs=dbfs), 16000)
    assert all(w.dbfs == pytest.approx(dbfs, abs=0.1) for w in windows)


def test_silence_is_floor_level_unvoiced_and_not_speech() -> None:
    windows, events = run(EnergyMeter(16000), np.zeros(16000, dtype=np.int16), 16000)
    assert len(windows) == 50
    assert all(w.dbfs == SILENCE_DBFS and w.pitch_hz is None and not w.speaking for w in windows)
    assert not [e for e in events if isinstance(e, SpeechStateEvent)]


def test_white_noise_has_a_level_but_no_pitch(noise: ToneFactory) -> None:
    windows, _ = run(EnergyMeter(16000), noise(1.0, 16000, dbfs=-30), 16000)
    assert np.mean([w.dbfs for w in windows]) == pytest.approx(-30, abs=0.3)
    assert sum(w.pitch_hz is not None for w in windows) <= 2


def test_hysteresis_keeps_state_between_the_two_thresholds(tone: ToneFactory) -> None:
    # loud, middling, quiet, middling: the middling level (between off=-45 and on=-35) never flips state.
    levels = [-20, -40, -60, -40]
    pcm = np.concatenate([tone(200, 0.2, 16000, dbfs=d) for d in levels])
    windows, events = run(EnergyMeter(16000, speech_on_dbfs=-35, speech_off_dbfs=-45), pcm, 16000)
    edges = [e for e in events if isinstance(e, SpeechStateEvent)]
    assert [(e.speaking, round(e.timestamp, 3)) for e in edges] == [(True, 0.0), (False, 0.4)]
    assert [w.speaking for w in windows[10:20]] == [True] * 10
    assert [w.speaking for w in windows[30:40]] == [False] * 10


def test_level_events_are_throttled_but_keep_the_peak(tone: ToneFactory) -> None:
    pcm = tone(200, 2.0, 16000, dbfs=-50)
    pcm[4160:4480] = tone(200, 0.02, 16000, dbfs=-10)  # exactly the 20 ms window at 0.26 s
    meter = EnergyMeter(16000, window_ms=20, max_level_events_per_s=5)
    windows, events = run(meter, pcm, 16000, chunk=160)
    levels = [e for e in events if isinstance(e, LevelEvent)]
    assert len(windows) == 100
    assert len(levels) == 10
    assert all(b.timestamp - a.timestamp >= 0.2 - 1e-9 for a, b in itertools.pairwise(levels))
    # The burst fell between two events; the next event still reports it.
    assert levels[1].timestamp == pytest.approx(0.2) and levels[1].dbfs == pytest.approx(-50, abs=0.2)
    assert levels[2].peak_dbfs == pytest.approx(-10, abs=0.2)


def test_energy_slope_follows_a_fade(tone: ToneFactory) -> None:
    rate = 16000
    t = np.arange(rate) / rate
    gain_db = -60 + 40 * t  # rising 40 dB/s
    pcm = (tone(200, 1.0, rate, dbfs=0).astype(np.float64) * 10 ** (gain_db / 20)).astype(np.int16)
    windows, _ = run(EnergyMeter(rate, slope_windows=5), pcm, rate)
    assert windows[0].energy_slope_db_per_s == 0.0
    assert all(w.energy_slope_db_per_s == pytest.approx(40, abs=3) for w in windows[5:])
    steady, _ = run(EnergyMeter(rate), tone(200, 0.5, rate), rate)
    assert all(abs(w.energy_slope_db_per_s) < 1 for w in steady[5:])


def test_results_do_not_depend_on_how_audio_is_chunked(tone: ToneFactory) -> None:
    pcm = np.concatenate([tone(180, 0.3, 16000, dbfs=-20), np.zeros(3000, dtype=np.int16)])
    whole, whole_events = run(EnergyMeter(16000), pcm, 16000)
    pieces, piece_events = run(EnergyMeter(16000), pcm, 16000, chunk=137)
    assert len(whole) == len(pieces) == pcm.size // 320
    for a, b in zip(whole, pieces, strict=True):
        assert a.timestamp == pytest.approx(b.timestamp)
        assert (a.dbfs, a.speaking, a.pitch_hz) == pytest.approx((b.dbfs, b.speaking, b.pitch_hz))
    assert len(whole_events) == len(piece_events)


def test_window_length_is_configurable() -> None:
    windows, _ = run(EnergyMeter(8000, window_ms=10), np.zeros(8000, dtype=np.int16), 8000)
    assert len(windows) == 100 and windows[1].timestamp == pytest.approx(0.01)


def test_pitch_can_be_switched_off(tone: ToneFactory) -> None:
    windows, _ = run(EnergyMeter(16000, track_pitch=False), tone(200, 0.2, 16000), 16000)
    assert all(w.pitch_hz is None for w in windows)


def test_misconfiguration_is_rejected() -> None:
    with pytest.raises(ValueError, match="speech_off_dbfs"):
        EnergyMeter(16000, speech_on_dbfs=-50, speech_off_dbfs=-40)
    with pytest.raises(ValueError, match="Hz"):
        EnergyMeter(16000).process(AudioFrame(np.zeros(160, dtype=np.int16), 8000))
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) == SILENCE_DBFS
