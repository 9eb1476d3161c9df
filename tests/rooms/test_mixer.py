"""The mixer sums voices exactly at speaking levels, bends only what would overflow, and fills gaps
with silence; the tone meter tells one voice's frequency apart from the others."""

from __future__ import annotations

import numpy as np
import pytest

from parley.audio.energy import rms_dbfs
from parley.audio.mixer import FULL_SCALE, KNEE, heard_tone_dbfs, mix, tone_dbfs


def _pcm(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int16)


def test_voices_at_speaking_level_are_summed_exactly() -> None:
    a, b = _pcm(1000, -2000, 3000, 0), _pcm(500, 500, -3000, -7)
    assert mix([a, b], 4).tolist() == [1500, -1500, 0, -7]


def test_missing_and_short_frames_are_silence() -> None:
    assert mix([], 3).tolist() == [0, 0, 0]
    assert mix([_pcm(5, 6)], 4).tolist() == [5, 6, 0, 0]
    assert mix([_pcm(1, 2, 3, 4, 5)], 3).tolist() == [1, 2, 3]


def test_sums_beyond_full_scale_are_held_inside_int16_and_keep_their_order() -> None:
    loud = np.full(4, 14000, dtype=np.int16)
    out = mix([loud, loud, _pcm(0, 1000, -20000, 0)], 4)
    assert out.dtype == np.int16
    assert KNEE < int(out[0]) < int(out[1]) <= FULL_SCALE  # 28000 < 29000: bent, not flattened
    assert out[2] == 8000  # exact again below the knee
    deep = mix([np.full(2, -32768, np.int16)] * 3, 2)
    assert -FULL_SCALE <= int(deep[0]) < -KNEE


def test_a_sum_just_over_the_knee_stays_close_to_it() -> None:
    out = mix([_pcm(KNEE), _pcm(100)], 1)
    assert KNEE < int(out[0]) <= KNEE + 100


def test_tone_meter_reads_a_sine_like_the_rms_meter() -> None:
    t = np.arange(16000) / 16000
    sine = (0.5 * 32767 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    assert tone_dbfs(sine, 16000, 1000) == pytest.approx(rms_dbfs(sine), abs=0.2)


def test_tone_meter_does_not_hear_a_loud_neighbour() -> None:
    t = np.arange(16000) / 16000
    loud = (0.9 * 32767 * np.sin(2 * np.pi * 500 * t)).astype(np.int16)
    assert tone_dbfs(loud, 16000, 1700) < -80


def test_a_phase_jump_from_a_late_packet_does_not_hide_a_heard_tone() -> None:
    t = np.arange(8000) / 8000
    sine = 0.3 * 32767 * np.sin(2 * np.pi * 1500 * t)
    jumped = np.concatenate([sine[:4000], -sine[4000:]]).astype(np.int16)  # half a cycle lost mid-way
    steady = rms_dbfs(sine.astype(np.int16))
    assert tone_dbfs(jumped, 8000, 1500) < steady - 10, "the whole-span meter cancels the two halves"
    assert heard_tone_dbfs(jumped, 8000, 1500) == pytest.approx(steady, abs=0.5)
    gap = jumped.copy()
    gap[:4000] = 0  # half the span lost: half the power
    assert heard_tone_dbfs(gap, 8000, 1500) == pytest.approx(steady - 3.0, abs=0.5)
    assert heard_tone_dbfs(np.zeros(8000, np.int16), 8000, 1500) < -80
