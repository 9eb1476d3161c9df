"""Rechunking must neither lose, duplicate, reorder nor mistime a single sample."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.audio.frame import AudioFrame
from parley.audio.rechunk import Rechunker

push_sizes = st.lists(st.integers(0, 2000), max_size=25)


@given(st.integers(1, 700), push_sizes)
def test_frames_are_exact_and_concatenate_back_to_the_input(frame_samples: int, sizes: list[int]) -> None:
    total = sum(sizes)
    signal = (np.arange(total) % 30000).astype(np.int16)
    chunker = Rechunker(frame_samples)
    frames, pos = [], 0
    for size in sizes:
        frames.extend(chunker.push(signal[pos : pos + size]))
        pos += size
    assert all(f.shape == (frame_samples,) and f.dtype == np.int16 for f in frames)
    assert len(frames) == total // frame_samples
    assert chunker.pending == total % frame_samples
    joined = np.concatenate([*frames, np.zeros(0, dtype=np.int16)])
    assert np.array_equal(joined, signal[: joined.size])
    tail = chunker.flush()
    if total % frame_samples:
        assert tail is not None and tail.size == frame_samples
        assert np.array_equal(tail[: total % frame_samples], signal[joined.size :])
        assert not tail[total % frame_samples :].any()
    else:
        assert tail is None
    assert chunker.pending == 0


@given(push_sizes)
def test_output_frames_never_alias_caller_buffers(sizes: list[int]) -> None:
    chunker = Rechunker(160)
    frames = []
    for size in sizes:
        buf = np.full(size, 7, dtype=np.int16)
        frames.extend(chunker.push(buf))
        buf[:] = -1  # a transport reusing its buffer must not change frames already handed out
    assert all((f == 7).all() for f in frames)


def test_timestamps_follow_the_first_sample_of_each_frame() -> None:
    rate = 16000
    chunker = Rechunker(512)
    out: list[AudioFrame] = []
    t = 100.0
    for size in (320, 320, 320, 700, 100):
        out.extend(chunker.push_frame(AudioFrame(np.zeros(size, dtype=np.int16), rate, timestamp=t)))
        t += size / rate
    assert [round(f.timestamp - 100.0, 6) for f in out] == [0.0, 0.032, 0.064]
    assert all(f.sample_rate == rate and f.num_samples == 512 for f in out)


def test_reset_drops_the_remainder_and_bad_sizes_are_rejected() -> None:
    chunker = Rechunker(10)
    chunker.push(np.ones(7, dtype=np.int16))
    chunker.reset()
    assert chunker.pending == 0 and chunker.flush() is None
    with pytest.raises(ValueError, match="positive"):
        Rechunker(0)
    with pytest.raises(ValueError, match="int16"):
        chunker.push(np.zeros(4, dtype=np.float64))
