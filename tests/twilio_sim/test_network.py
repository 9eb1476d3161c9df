"""The simulated network: seeded, so a bad line is the same bad line every run."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pytest

from parley.twilio_sim.network import ImpairedLink, NetworkProfile, Scheduled

FRAME_S = 0.02


def run(profile: NetworkProfile, packets: int) -> tuple[ImpairedLink[int], list[Scheduled[int]]]:
    link: ImpairedLink[int] = ImpairedLink(profile)
    out: list[Scheduled[int]] = []
    for i in range(packets):
        out += link.push(i, i * FRAME_S)
    out += link.flush(packets * FRAME_S)
    return link, out


def test_a_perfect_line_sends_every_packet_once_on_time_in_order() -> None:
    link, out = run(NetworkProfile(), 100)
    assert [s.packet for s in out] == list(range(100))
    assert [s.send_at for s in out] == [i * FRAME_S for i in range(100)]
    assert (link.stats.lost, link.stats.duplicated, link.stats.reordered) == (0, 0, 0)


def test_the_same_seed_gives_the_same_line_and_another_seed_another() -> None:
    profile = NetworkProfile(loss=0.1, duplicate=0.1, reorder=0.1, jitter_ms=40, seed=3)
    _, first = run(profile, 500)
    _, again = run(profile, 500)
    _, other = run(NetworkProfile(loss=0.1, duplicate=0.1, reorder=0.1, jitter_ms=40, seed=4), 500)
    assert first == again
    assert first != other


def test_impairments_happen_at_their_configured_rates() -> None:
    link, out = run(NetworkProfile(loss=0.05, duplicate=0.03, reorder=0.02, seed=11), 20_000)
    stats = link.stats
    assert stats.lost / stats.offered == pytest.approx(0.05, abs=0.005)
    assert stats.duplicated / stats.offered == pytest.approx(0.03 * 0.95, abs=0.005)
    assert stats.reordered / stats.offered == pytest.approx(0.02 * 0.95, abs=0.005)
    # What the far end sees matches the counts: gaps, repeats and swapped neighbours.
    seqs = [s.packet for s in out]
    assert len(seqs) == stats.sent
    assert stats.offered - len(set(seqs)) == stats.lost
    assert len(seqs) - len(set(seqs)) == stats.duplicated
    assert sum(b < a for a, b in pairwise(seqs)) == stats.reordered


def test_jitter_delays_sends_but_keeps_the_20ms_schedule_and_the_order() -> None:
    link, out = run(NetworkProfile(jitter_ms=40, seed=5), 3000)
    assert [s.packet for s in out] == list(range(3000))  # one TCP stream: late packets hold up the rest
    delays = [s.send_at - s.packet * FRAME_S for s in out]
    assert min(delays) >= 0
    assert max(delays) <= 0.04 + 1e-9  # no drift: each send is within jitter of its own due time
    # About half the jitter on average (uniform 0..40 ms), a bit more where a late packet holds up the next.
    assert 0.019 < sum(delays) / len(delays) < 0.025
    assert link.stats.max_delay_s == pytest.approx(max(delays))


def test_a_held_packet_whose_successor_is_lost_is_released_not_swapped() -> None:
    profile = NetworkProfile(loss=0.3, reorder=0.3, seed=2)
    link, out = run(profile, 2000)
    seqs = [s.packet for s in out]
    assert sorted(set(seqs)) == sorted(seqs)  # no duplicates configured
    assert len(seqs) + link.stats.lost == 2000  # held packets are never dropped by the hold itself
    assert sum(b < a for a, b in pairwise(seqs)) == link.stats.reordered


@pytest.mark.parametrize("field", ["loss", "duplicate", "reorder"])
def test_probabilities_outside_0_1_are_refused(field: str) -> None:
    with pytest.raises(ValueError, match=field):
        bad: dict[str, Any] = {field: 1.5}
        NetworkProfile(**bad)


def test_negative_jitter_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter_ms"):
        NetworkProfile(jitter_ms=-1)
