"""Summing several voices into one stream, and measuring one tone's level in the result.

Pure numpy: no clocks, no state, so the same frames always give the same mix.

The sum is bit-exact while it stays under ``KNEE`` (about -2 dBFS): two or three voices at speaking
level never get there, so an ordinary mix is the plain sum. Only peaks that would overflow int16 are
bent, by a memoryless soft knee (tanh) that meets full scale asymptotically with a continuous slope.
A hard clip would square those peaks off and splash odd harmonics across the band; a limiter with a gain
envelope would sound better still, but needs state per listener and would change the level of every
voice in the mix, including quiet ones, for the length of its release.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from parley.audio.energy import SILENCE_DBFS
from parley.audio.frame import PCM16

FULL_SCALE = 32767
KNEE = 26000
"""Sums within +-KNEE pass unchanged; beyond it they are compressed smoothly towards full scale."""


def mix(frames: Sequence[PCM16], length: int) -> PCM16:
    """The sum of ``frames`` as ``length`` int16 samples.

    A frame shorter than ``length`` counts as silence after its end (a longer one is cut), so a leg that
    sent nothing this tick is simply absent. No frames gives silence.
    """
    if length < 0:
        raise ValueError(f"length must not be negative, got {length}")
    acc = np.zeros(length, dtype=np.int32)
    for pcm in frames:
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"mix needs 1-D int16 frames, got {pcm.dtype} with shape {pcm.shape}")
        n = min(length, pcm.size)
        acc[:n] += pcm[:n]
    return soft_clip(acc)


def soft_clip(samples: npt.NDArray[np.int32]) -> PCM16:
    """int32 sums to int16: unchanged within +-KNEE, a tanh knee above it (never past full scale)."""
    magnitude = np.abs(samples)
    over = magnitude > KNEE
    if not over.any():
        return samples.astype(np.int16)
    room = FULL_SCALE - KNEE
    bent = KNEE + room * np.tanh((magnitude[over] - KNEE) / room)
    out = samples.astype(np.float64)
    out[over] = np.sign(out[over]) * np.floor(bent)
    result: PCM16 = out.astype(np.int16)
    return result


def tone_dbfs(pcm: PCM16, sample_rate: int, frequency: float) -> float:
    """Level in dBFS of the sinusoid at ``frequency`` in ``pcm`` (Hann-windowed single-bin DFT).

    On the same scale as ``energy.rms_dbfs``: a full-scale sine at ``frequency`` reads about -3 dBFS,
    whatever else is in the signal. The window keeps a loud tone a few hundred hertz away from leaking
    into the bin (its side lobes fall 18 dB per octave), which is what tells whether one voice's energy
    reached a listener's audio.
    """
    if pcm.size == 0:
        return SILENCE_DBFS
    samples = _samples(pcm, sample_rate, frequency)
    return _to_dbfs(_tone_power(samples, sample_rate, frequency))


def heard_tone_dbfs(pcm: PCM16, sample_rate: int, frequency: float, block_s: float = 0.02) -> float:
    """Level in dBFS of the sinusoid at ``frequency`` as a listener on a packet line hears it.

    ``tone_dbfs`` adds the whole span up in phase: when a late or lost packet shifts the tone's phase
    halfway through, the two halves partly cancel, and a tone that was plainly heard reads several dB
    low. Here each ``block_s`` block (one packet by default) is measured on its own and the powers are
    averaged, so only missing audio lowers the level. The price is a higher floor under other sounds:
    use ``tone_dbfs`` to show that a tone is absent.
    """
    if pcm.size == 0:
        return SILENCE_DBFS
    samples = _samples(pcm, sample_rate, frequency)
    size = max(2, round(block_s * sample_rate))
    blocks = [samples[i : i + size] for i in range(0, samples.size, size)]
    if len(blocks) > 1 and blocks[-1].size < size:
        blocks.pop()  # a short tail has a wider bin: it would read other sounds as the tone
    return _to_dbfs(sum(_tone_power(block, sample_rate, frequency) for block in blocks) / len(blocks))


def _samples(pcm: PCM16, sample_rate: int, frequency: float) -> npt.NDArray[np.float64]:
    """``pcm`` as floats in [-1, 1), once ``frequency`` is known to be measurable at ``sample_rate``."""
    if not 0 < frequency < sample_rate / 2:
        raise ValueError(f"frequency {frequency} Hz is not below Nyquist at {sample_rate} Hz")
    return pcm.astype(np.float64) / 32768.0


def _tone_power(samples: npt.NDArray[np.float64], sample_rate: int, frequency: float) -> float:
    """Mean square of the sinusoid at ``frequency`` in ``samples`` (Hann-windowed single-bin DFT)."""
    window = np.hanning(samples.size) if samples.size > 1 else np.ones(1)
    phase = np.exp(-2j * np.pi * frequency * np.arange(samples.size) / sample_rate)
    amplitude = 2.0 * abs(np.dot(samples * window, phase)) / float(window.sum())
    return float(amplitude * amplitude / 2.0)


def _to_dbfs(mean_square: float) -> float:
    if mean_square <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(mean_square))
