"""The Redis Streams timeline against a real redis-server: batching, groups, acks, replay, redelivery."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select

from parley.engine.events import Event, EventType
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.models import CallEvent
from parley.store.tenants import TenantRepository
from parley.timeline.envelope import Envelope
from parley.timeline.persister import Persister
from parley.timeline.redis_stream import RedisTimeline


@pytest.fixture
async def bus(redis_url: str) -> AsyncIterator[RedisTimeline]:
    timeline = RedisTimeline.from_url(redis_url, stream=f"test:{uuid.uuid4().hex[:8]}")
    yield timeline
    await timeline.client.delete(timeline.stream)
    await timeline.close()


def ev(kind: EventType, session: str = "s1", **data: object) -> Event:
    return Event(kind, session, data=dict(data))


async def test_a_burst_of_events_goes_out_in_a_few_round_trips(
    bus: RedisTimeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    sends: list[int] = []
    original = bus._send

    async def counting(batch: list[object]) -> None:
        sends.append(len(batch))
        await original(batch)  # type: ignore[arg-type]

    monkeypatch.setattr(bus, "_send", counting)
    for i in range(600):
        bus.emit(ev(EventType.AGENT_TEXT, f"s{i % 3}", i=i))
    await bus.flush()
    assert sum(sends) == 600 and len(sends) <= 3, "one pipelined round trip per batch of up to 500"
    assert await bus.client.xlen(bus.stream) == 600
    session_ids = [ident for ident, _ in await bus.client.xrange(bus.session_key("s1"))]
    assert session_ids == [f"{seq}-0" for seq in range(1, 201)]


async def test_groups_each_get_everything_and_consumers_share_a_group(bus: RedisTimeline) -> None:
    for i in range(10):
        bus.emit(ev(EventType.AGENT_TEXT, i=i))
    await bus.flush()
    persister_a, persister_b = bus.consumer("persister", "a"), bus.consumer("persister", "b")
    monitor = bus.consumer("monitor", "a")
    got_a = await persister_a.read(4, 0.1)
    got_b = await persister_b.read(100, 0.1)
    assert sorted(e.data["i"] for e in got_a + got_b) == list(range(10)), "split, not duplicated"
    assert len(await monitor.read(100, 0.1)) == 10
    await persister_a.ack(got_a)
    await persister_b.ack(got_b)
    pending = await bus.client.xpending(bus.stream, "persister")
    assert pending["pending"] == 0


async def test_what_a_dead_consumer_held_is_delivered_again(bus: RedisTimeline) -> None:
    for i in range(6):
        bus.emit(ev(EventType.AGENT_TEXT, i=i))
    await bus.flush()
    doomed = bus.consumer("persister", "worker-1")
    held = await doomed.read(4, 0.1)
    assert [e.data["i"] for e in held] == [0, 1, 2, 3]
    restarted = bus.consumer("persister", "worker-1")  # the same worker, restarted
    again = await restarted.read(10, 0.1)
    assert [e.data["i"] for e in again] == [0, 1, 2, 3]
    await restarted.ack(again[:2])
    other = bus.consumer("persister", "worker-2", claim_idle_s=0.2)  # worker-1 never comes back
    first = await other.read(10, 0.1)
    assert [e.data["i"] for e in first] == [4, 5], "new entries first; worker-1's are not idle long enough"
    await other.ack(first)
    await asyncio.sleep(0.3)
    claimed = await other.read(10, 0.1)
    assert [e.data["i"] for e in claimed] == [2, 3]
    await other.ack(claimed)
    assert (await bus.client.xpending(bus.stream, "persister"))["pending"] == 0


async def test_follow_replays_from_any_sequence_number(bus: RedisTimeline) -> None:
    for i in range(5):
        bus.emit(ev(EventType.AGENT_TEXT, i=i))
    await bus.flush()
    seen: list[int] = []

    async def follow() -> None:
        async for envelope in bus.follow("s1", after_seq=3):
            seen.append(envelope.seq)

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.1)
    assert seen == [4, 5]
    bus.emit(ev(EventType.SESSION_ENDED))
    await asyncio.wait_for(task, 2.0)
    assert seen == [4, 5, 6]


async def test_a_resent_batch_is_stored_once(bus: RedisTimeline, db: Database) -> None:
    async with db.session() as session:
        org = await TenantRepository(session).ensure_org("acme")
        call = await CallRepository(session).create(org.id, direction="web", transport="websocket")
    sent: list[object] = []
    original = bus._send

    async def remember(batch: list[object]) -> None:
        sent.extend(batch)
        await original(batch)  # type: ignore[arg-type]

    bus._send = remember  # type: ignore[method-assign]
    bus.emit(ev(EventType.SESSION_STARTED, call.session_id))
    bus.emit(ev(EventType.TRANSCRIPT_FINAL, call.session_id, text="hi", audio_seconds=0.5))
    await bus.flush()
    await original(sent)  # e.g. the connection dropped after Redis applied the batch: sent again
    assert await bus.client.xlen(bus.stream) == 4
    assert await bus.client.xlen(bus.session_key(call.session_id)) == 2, "the session stream rejects repeats"
    persister = Persister(db)
    await persister.drain(bus.consumer("persister", "p"))
    async with db.session() as session:
        count = await session.scalar(select(func.count()).select_from(CallEvent))
        turns = await CallRepository(session).turns(call.id)
    assert count == 2 and [t.text for t in turns] == ["hi"]


async def test_a_consumer_group_lost_with_redis_data_is_made_again(bus: RedisTimeline) -> None:
    """Redis restarted without persistence: the stream and its groups are gone. Events sent after it
    must still be read, not fail every read with NOGROUP until the worker restarts."""
    consumer = bus.consumer("persister", "a")
    bus.emit(ev(EventType.AGENT_TEXT, i=1))
    await bus.flush()
    await consumer.ack(await consumer.read(100, 0.1))
    await bus.client.delete(bus.stream)  # what a restart without its data leaves
    bus.emit(ev(EventType.AGENT_TEXT, i=2))
    await bus.flush()
    assert [e.data["i"] for e in await consumer.read(100, 0.1)] == [2]


async def test_the_persister_outlives_a_failed_read(db: Database) -> None:
    """A dropped connection to the bus is retried, not the end of event saving for this worker."""

    class Flaky:
        def __init__(self) -> None:
            self.failures = 2

        async def read(self, count: int = 100, block_s: float = 1.0) -> list[Envelope]:
            await asyncio.sleep(0.01)  # a real read waits for the bus
            if self.failures:
                self.failures -= 1
                raise ConnectionError("Connection closed by server.")
            return []

        async def ack(self, envelopes: object) -> None:
            return None

    persister = Persister(db, block_s=0.0)
    flaky = Flaky()
    task = asyncio.create_task(persister.run(flaky))  # type: ignore[arg-type]
    try:
        await asyncio.wait_for(persister.caught_up.wait(), 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert flaky.failures == 0
