"""The transport's building blocks: the downlink that survives reconnects, the inbound clock, limits."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from parley.audio.frame import AudioFrame
from parley.engine.events import now
from parley.transports.downlink import Downlink
from parley.transports.uplink import InboundClock, TokenBucket


class Recorder:
    def __init__(self) -> None:
        self.audio: list[int] = []
        self.clears = 0

    async def send_audio(self, seq: int, frame: AudioFrame) -> None:
        self.audio.append(seq)

    def queue_audio(self, seq: int, frame: AudioFrame) -> None:
        self.audio.append(seq)

    def send_clear(self) -> None:
        self.clears += 1


def frame(t: float = 0.0) -> AudioFrame:
    return AudioFrame(np.zeros(320, np.int16), 16000, t)


async def test_playout_holds_while_no_one_listens_and_resumes_on_attach() -> None:
    downlink = Downlink(16000)
    first = Recorder()
    downlink.attach(first)
    await downlink.write(frame())
    downlink.detach(first)
    detached = now()
    writing = asyncio.create_task(downlink.write(frame()))
    await asyncio.sleep(0.05)
    assert not writing.done(), "a write waits for a listener instead of playing into the void"
    second = Recorder()
    downlink.attach(second, last_received_seq=0)
    await asyncio.wait_for(writing, 1)
    assert first.audio == [0] and second.audio == [1]
    assert downlink.holds == 1
    # the hold is remembered, so the late frame it makes is not taken for an underrun
    assert 0.04 <= downlink.held_during(detached - 10, now()) <= now() - detached
    assert downlink.held_during(detached - 10, detached - 5) == 0


async def test_a_reconnecting_peer_gets_exactly_the_frames_it_missed() -> None:
    downlink = Downlink(16000)
    old = Recorder()
    downlink.attach(old)
    for _ in range(5):
        await downlink.write(frame())
    downlink.detach(old)
    new = Recorder()
    resent = downlink.attach(new, last_received_seq=2)  # frames 3 and 4 were lost with the socket
    assert resent == 2 and new.audio == [3, 4]
    await downlink.write(frame())
    assert new.audio == [3, 4, 5]


async def test_frames_cut_by_a_barge_in_are_never_resent() -> None:
    downlink = Downlink(16000)
    peer = Recorder()
    downlink.attach(peer)
    for _ in range(3):
        await downlink.write(frame())
    await downlink.clear()
    downlink.detach(peer)
    again = Recorder()
    assert downlink.attach(again, last_received_seq=0) == 0
    assert peer.clears == 1


def test_inbound_clock_is_contiguous_under_jitter_and_resyncs_after_a_gap() -> None:
    clock = InboundClock(max_drift_s=0.25)
    stamps = [clock.stamp(0.02, arrival) for arrival in (10.02, 10.05, 10.055, 10.08, 10.10)]
    assert stamps == pytest.approx([10.0, 10.02, 10.04, 10.06, 10.08])
    assert clock.stamp(0.02, 12.0) == pytest.approx(11.98), "after a stall the clock follows arrival"
    assert clock.resyncs == 1


def test_token_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
