"""The jitter buffer hands playout a frame every tick: in order, once each, concealing what is missing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from parley.audio.jitter import JitterBuffer

N = 160  # 20 ms at 8 kHz, a telephony packet
RATE = 8000


def packet(i: int) -> np.ndarray:
    """A loud frame whose value tells which packet it was."""
    return np.full(N, 1000 + i, dtype=np.int16)


def who(frame: np.ndarray) -> int | None:
    """Which packet a played frame came from, or None for concealment/silence."""
    if frame.size and (frame == frame[0]).all() and frame[0] >= 1000:
        return int(frame[0]) - 1000
    return None


def drain(jb: JitterBuffer, ticks: int) -> list[int | None]:
    return [who(jb.get()) for _ in range(ticks)]


def test_plays_in_order_after_filling_to_the_initial_depth() -> None:
    jb = JitterBuffer(N, RATE, initial_depth=3)
    out = []
    for i in range(10):
        jb.put(i, packet(i))
        out.append(who(jb.get()))
    assert out == [None, None, *range(8)]
    assert jb.stats.depth == 2 and jb.stats.played == 8 and jb.stats.underruns == 0


@given(st.permutations(list(range(12))))
def test_any_arrival_order_within_the_depth_comes_out_in_order(order: list[int]) -> None:
    jb = JitterBuffer(N, RATE, initial_depth=12, max_depth=12)
    for i in order:
        assert jb.put(i, packet(i))
    assert drain(jb, 12) == list(range(12))


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda d: st.tuples(st.just(d), st.lists(st.integers(0, d - 1), min_size=30, max_size=80))
    )
)
def test_live_jitter_smaller_than_the_depth_loses_nothing(case: tuple[int, list[int]]) -> None:
    depth, delays = case
    n = len(delays)
    arrivals: dict[int, list[int]] = {}
    for i, delay in enumerate(delays):  # packet i is sent at tick i and arrives `delay` ticks late
        arrivals.setdefault(i + delay, []).append(i)
    jb = JitterBuffer(N, RATE, initial_depth=depth + 1, max_depth=2 * depth + 2)
    played = []
    for tick in range(n + depth + 5):
        for i in arrivals.get(tick, []):
            jb.put(i, packet(i), timestamp=tick * 0.02)
        played.append(who(jb.get()))
    real = [p for p in played if p is not None]
    assert real == list(range(n))
    assert jb.stats.late == 0 and jb.stats.lost == 0 and jb.stats.dropped == 0


@given(st.lists(st.integers(0, 30), min_size=1, max_size=120))
def test_duplicates_never_come_out_twice(seqs: list[int]) -> None:
    jb = JitterBuffer(N, RATE, initial_depth=2, max_depth=40)
    played: list[int | None] = []
    for s in seqs:
        jb.put(s, packet(s))
        played.append(who(jb.get()))
    played += drain(jb, 40)
    real = [p for p in played if p is not None]
    assert len(real) == len(set(real))
    assert real == sorted(real)
    stats = jb.stats
    assert stats.received == len(seqs)
    assert stats.played + stats.late + stats.duplicates + stats.depth + stats.dropped == len(seqs)


def test_sequence_numbers_wrap_around_16_bits() -> None:
    jb = JitterBuffer(N, RATE, initial_depth=2)
    seqs = [(65530 + i) % 65536 for i in range(12)]
    order = [seqs[1], seqs[0], *seqs[2:]]  # reordered right at the start, and again across the wrap
    order[6], order[7] = order[7], order[6]
    out = []
    for s in order:
        jb.put(s, packet(s % 1000))
        out.append(who(jb.get()))
    out += drain(jb, 3)
    assert [p for p in out if p is not None] == [s % 1000 for s in seqs]


def test_late_packets_are_dropped_and_counted() -> None:
    jb = JitterBuffer(N, RATE, initial_depth=2)
    jb.put(0, packet(0))
    jb.put(2, packet(2))
    jb.put(3, packet(3))
    assert drain(jb, 2) == [0, None]  # 1 missing while 2 and 3 wait: skip it, conceal
    assert not jb.put(1, packet(1))
    assert not jb.put(0, packet(0))
    assert drain(jb, 2) == [2, 3]
    assert jb.stats.late == 2 and jb.stats.lost == 1


def test_a_lost_packet_is_concealed_with_a_fading_repeat_then_silence() -> None:
    jb = JitterBuffer(N, RATE, initial_depth=2, conceal_frames=2)
    jb.put(0, packet(0))
    for s in (4, 5):
        jb.put(s, packet(s))
    assert who(jb.get()) == 0
    first, second, third = jb.get(), jb.get(), jb.get()  # 1, 2, 3 never arrived
    assert 0 < np.abs(first).max() <= 1000 and first[0] > first[-1]
    assert np.abs(second).max() < first[-1] + 1 and second[-1] <= 1
    assert not third.any()
    assert who(jb.get()) == 4
    stats = jb.stats
    assert stats.lost == 3 and stats.concealed == 2 and stats.underruns == 0


def test_running_dry_pauses_playout_grows_the_depth_and_loses_nothing() -> None:
    jb = JitterBuffer(N, RATE, initial_depth=2, min_depth=2)
    jb.put(0, packet(0))
    jb.put(1, packet(1))
    assert drain(jb, 2) == [0, 1]
    assert drain(jb, 3) == [None, None, None]  # network stall
    stats = jb.stats
    assert stats.underruns == 1 and stats.target_depth == 3
    for s in (2, 3):
        jb.put(s, packet(s))
    assert who(jb.get()) is None  # waiting for 3 frames now
    jb.put(4, packet(4))
    assert drain(jb, 3) == [2, 3, 4]  # the delayed packets were not skipped
    assert jb.stats.lost == 0 and jb.stats.late == 0


def test_depth_adapts_to_measured_jitter_and_shrinks_slowly_when_calm() -> None:
    rng = np.random.default_rng(3)
    jb = JitterBuffer(N, RATE, initial_depth=2, min_depth=2, max_depth=8, shrink_after_s=1.0)
    seq = 0
    for tick in range(200):  # 4 s of arrivals scattered up to 80 ms late
        jb.put(seq, packet(seq % 1000), timestamp=tick * 0.02 + rng.uniform(0, 0.08))
        seq += 1
        jb.get()
    assert jb.stats.jitter > 0.06
    assert 5 <= jb.target_depth <= 8
    grown = jb.target_depth
    for tick in range(200, 700):  # then 10 s of clockwork
        jb.put(seq, packet(seq % 1000), timestamp=tick * 0.02)
        seq += 1
        jb.get()
    # The 100-packet window forgets the jitter after 2 s, then one frame per calm second comes off.
    assert jb.target_depth == 2 < grown
    for tick in range(700, 760):  # a storm never pushes the target past max_depth
        jb.put(seq, packet(seq % 1000), timestamp=tick * 0.02 + rng.uniform(0, 1.0))
        seq += 1
        jb.get()
    assert jb.target_depth == 8


def test_a_burst_beyond_max_depth_is_cut_back_to_the_target() -> None:
    jb = JitterBuffer(N, RATE, initial_depth=3, max_depth=10)
    for s in range(5):
        jb.put(s, packet(s))
        jb.get()
    for s in range(5, 60):  # 1.1 s of audio arriving at once after a stall
        jb.put(s, packet(s))
    depth = jb.stats.depth
    assert depth <= 10 and jb.latency <= 10 * 0.02
    assert jb.stats.dropped == 57 - depth  # 2 waiting before the burst + 55 in it, minus what is kept
    assert drain(jb, depth) == list(range(60 - depth, 60))  # the newest audio, in order, without gaps


def test_quiet_frames_are_skipped_to_shed_extra_depth() -> None:
    jb = JitterBuffer(N, RATE, initial_depth=6, min_depth=2, max_depth=10, shrink_after_s=0.1)
    quiet = np.zeros(N, dtype=np.int16)
    for s in range(6):
        jb.put(s, quiet)
    for s in range(6, 30):
        jb.get()
        jb.put(s, quiet)
    assert jb.target_depth == 2
    assert jb.stats.depth <= 3 and jb.stats.dropped >= 3


def test_bad_packets_and_settings_are_rejected() -> None:
    jb = JitterBuffer(N, RATE)
    with pytest.raises(ValueError, match="16-bit"):
        jb.put(70000, packet(0))
    with pytest.raises(ValueError, match="160 int16"):
        jb.put(0, np.zeros(80, dtype=np.int16))
    with pytest.raises(ValueError, match="min_depth"):
        JitterBuffer(N, RATE, min_depth=5, initial_depth=3)
    assert jb.get().shape == (N,)
    jb.put(0, packet(0))
    jb.reset()
    assert jb.stats.depth == 0 and jb.stats.received == 0


def test_pop_ready_hands_frames_on_at_once_in_order() -> None:
    """A recogniser needs no playout clock: in-order frames go on the moment they arrive."""
    jb = JitterBuffer(N, RATE)
    handed: list[int | None] = []
    for i in range(5):
        jb.put(i, packet(i), i * 0.02)
        handed += [who(f) for f in jb.pop_ready(wait_frames=2)]
        assert len(handed) == i + 1  # nothing held back
    assert handed == [0, 1, 2, 3, 4]


def test_pop_ready_waits_a_little_for_a_reordered_frame_then_conceals_a_lost_one() -> None:
    jb = JitterBuffer(N, RATE)
    got: list[int | None] = []
    for seq in (0, 2, 1, 3, 5, 6, 7):  # 1 arrives late but within the wait; 4 never arrives
        jb.put(seq, packet(seq))
        got += [who(f) for f in jb.pop_ready(wait_frames=2)]
    assert got == [0, 1, 2, 3, None, 5, 6, 7]
    assert jb.stats.lost == 1 and jb.stats.late == 0
    jb.put(4, packet(4))  # too late now: dropped, never played out of order
    assert jb.pop_ready() == [] and jb.stats.late == 1
