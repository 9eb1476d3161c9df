"""The in-process timeline: numbering, consumer groups with redelivery, live feeds, the journal."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parley.engine.events import Event, EventType
from parley.timeline.journal import Journal
from parley.timeline.memory import MemoryTimeline


def ev(kind: EventType, session: str = "s1", **data: object) -> Event:
    return Event(kind, session, data=dict(data))


async def test_events_are_numbered_per_session_and_every_group_gets_all() -> None:
    bus = MemoryTimeline()
    persist, monitor = bus.consumer("persister", "a"), bus.consumer("monitor", "a")
    for session in ("s1", "s2", "s1"):
        bus.emit(ev(EventType.SPEECH_STARTED, session))
    for consumer in (persist, monitor):
        got = await consumer.read(10, 0.1)
        assert [(e.session_id, e.seq) for e in got] == [("s1", 1), ("s2", 1), ("s1", 2)]
        await consumer.ack(got)
    assert await persist.read(10, 0.05) == []


async def test_unacknowledged_entries_come_back_to_a_restarted_consumer() -> None:
    bus = MemoryTimeline()
    first = bus.consumer("persister", "worker-1")
    for i in range(5):
        bus.emit(ev(EventType.AGENT_TEXT, text=str(i)))
    taken = await first.read(3, 0.1)
    await first.ack(taken[:1])
    restarted = bus.consumer("persister", "worker-1")  # the same worker after a crash
    again = await restarted.read(10, 0.1)
    assert [e.data["text"] for e in again] == ["1", "2"], "first what was taken and never acknowledged"
    await restarted.ack(again)
    rest = await restarted.read(10, 0.1)
    assert [e.data["text"] for e in rest] == ["3", "4"]


async def test_a_reader_waits_for_the_next_event() -> None:
    bus = MemoryTimeline()
    consumer = bus.consumer("persister", "a")
    reading = asyncio.create_task(consumer.read(10, 2.0))
    await asyncio.sleep(0.05)
    assert not reading.done()
    bus.emit(ev(EventType.SESSION_STARTED))
    assert [e.type for e in await asyncio.wait_for(reading, 1.0)] == ["session.started"]


async def test_follow_replays_from_a_sequence_number_then_goes_live() -> None:
    bus = MemoryTimeline()
    for i in range(3):
        bus.emit(ev(EventType.AGENT_TEXT, text=str(i)))
    seen: list[int] = []

    async def follow() -> None:
        async for envelope in bus.follow("s1", after_seq=1):
            seen.append(envelope.seq)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.02)
    assert seen == [2, 3]
    bus.emit(ev(EventType.AGENT_TEXT, text="3"))
    bus.emit(ev(EventType.SESSION_ENDED, reason="hangup"))
    await asyncio.wait_for(task, 1.0)
    assert seen == [2, 3, 4, 5], "the feed ends with the session"


async def test_the_journal_lasts_until_the_persister_acknowledges_the_end(tmp_path: Path) -> None:
    bus = MemoryTimeline(tmp_path)
    consumer = bus.consumer("persister", "a")
    bus.emit(ev(EventType.SESSION_STARTED))
    bus.emit(ev(EventType.TRANSCRIPT_FINAL, text="hello"))
    journal = tmp_path / "s1.jsonl"
    assert len(journal.read_text().splitlines()) == 2, "written before anyone consumed it"
    assert list(Journal.orphans(tmp_path)) == [], "a live writer's journal is not an orphan"
    bus.emit(ev(EventType.SESSION_ENDED))
    got = await consumer.read(10, 0.1)
    await consumer.ack(got)
    assert not journal.exists()
    await bus.close()


async def test_a_dead_writers_journal_is_recovered_torn_line_and_all(tmp_path: Path) -> None:
    bus = MemoryTimeline(tmp_path)
    bus.emit(ev(EventType.SESSION_STARTED, "call_9"))
    bus.emit(ev(EventType.TRANSCRIPT_FINAL, "call_9", text="hi"))
    await bus.close()  # the writer is gone (closing releases its lock, as dying does)
    with (tmp_path / "call_9.jsonl").open("a") as file:
        file.write('{"s": "call_9", "q": 3, "y": "agent.te')  # killed mid-write
    [orphan] = list(Journal.orphans(tmp_path))
    assert orphan.session_id == "call_9"
    assert [(e.seq, e.type) for e in orphan.envelopes] == [(1, "session.started"), (2, "transcript.final")]
    orphan.remove()
    assert list(Journal.orphans(tmp_path)) == []
