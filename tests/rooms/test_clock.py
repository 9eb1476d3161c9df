"""The room's clock keeps real time (the one test here that uses it)."""

from __future__ import annotations

import asyncio
import itertools

from parley.engine.events import Timeline, now
from parley.rooms import Mode, Participant, Role, Room
from tests.rooms.helpers import Ear


async def test_run_ticks_fifty_times_a_second_without_drift() -> None:
    room = Room("r", Timeline(), record=False)
    ear = Ear()
    room.join(Participant("a", Role.REP, Mode.SPEAK), ear)
    clock = asyncio.create_task(room.run())
    started = now()
    await asyncio.sleep(1.0)
    ticks, elapsed = room.ticks, now() - started
    await room.close()
    await clock
    assert abs(ticks - 50 * elapsed) <= 2
    assert abs(ticks - 50) <= 2
    stamps = [f.timestamp for f in ear.frames[:ticks]]
    assert all(abs(b - a - 0.02) < 1e-9 for a, b in itertools.pairwise(stamps))
