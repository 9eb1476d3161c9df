"""Reading any WAV into Parley's PCM16 mono, and writing PCM16 mono or stereo recordings (via libsndfile)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import BinaryIO

import numpy as np
import soundfile as sf

from parley.audio.frame import PCM16, AudioFrame

WavSource = str | os.PathLike[str] | BinaryIO


def read_wav(source: WavSource) -> AudioFrame:
    """Any PCM 8/16/24/32-bit or float WAV, any rate, any channel count -> PCM16 mono at the file's rate.

    Channels are averaged; float samples beyond full scale are clipped. The frame's timestamp is 0.
    """
    if isinstance(source, str | os.PathLike) and not os.path.exists(source):
        raise FileNotFoundError(f"no such audio file: {os.fspath(source)}")
    try:
        data, rate = sf.read(source, dtype="float64", always_2d=True)
    except (sf.SoundFileError, RuntimeError, TypeError) as exc:
        raise ValueError(f"cannot read audio from {_describe(source)}: {exc}") from exc
    if data.shape[1] == 0:
        raise ValueError(f"{_describe(source)} has no audio channels")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    # libsndfile scales integer PCM by 1/32768, so this recovers 16-bit input exactly.
    pcm = np.clip(np.rint(mono * 32768.0), -32768, 32767).astype(np.int16)
    return AudioFrame(pcm, int(rate))


def write_wav(target: WavSource, pcm_or_channels: PCM16 | Sequence[PCM16], sample_rate: int) -> None:
    """Write 16-bit WAV: one array is mono, a pair is stereo (the shorter one padded with silence)."""
    if isinstance(pcm_or_channels, np.ndarray):
        channels: list[PCM16] = [pcm_or_channels]
    else:
        channels = list(pcm_or_channels)
    if len(channels) not in (1, 2):
        raise ValueError(f"write_wav takes one (mono) or two (stereo) channels, got {len(channels)}")
    for ch in channels:
        if ch.dtype != np.int16 or ch.ndim != 1:
            raise ValueError(f"channels must be 1-D int16 PCM, got {ch.dtype} with shape {ch.shape}")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    length = max(ch.size for ch in channels)
    data = np.zeros((length, len(channels)), dtype=np.int16)
    for i, ch in enumerate(channels):
        data[: ch.size, i] = ch
    sf.write(target, data, sample_rate, subtype="PCM_16", format="WAV")


def _describe(source: WavSource) -> str:
    return os.fspath(source) if isinstance(source, str | os.PathLike) else "the given file object"
