"""The persister stores a session's timeline once, however often and in whatever batches it arrives."""

from __future__ import annotations

from sqlalchemy import func, select

from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.models import Call, CallEvent, TranscriptTurn
from parley.store.tenants import TenantRepository
from parley.timeline.persister import Persister
from tests.timeline.samples import conversation


async def _setup(db: Database) -> tuple[str, str]:
    async with db.session() as session:
        org = await TenantRepository(session).ensure_org("acme")
        call = await CallRepository(session).create(org.id, direction="web", transport="websocket")
    return org.id, call.session_id


async def _counts(db: Database) -> tuple[int, int]:
    async with db.session() as session:
        events = await session.scalar(select(func.count()).select_from(CallEvent))
        turns = await session.scalar(select(func.count()).select_from(TranscriptTurn))
    return int(events or 0), int(turns or 0)


async def test_duplicates_and_odd_batches_change_nothing(db: Database) -> None:
    _, session_id = await _setup(db)
    ended: list[str] = []

    async def hook(_session: object, call: Call) -> None:
        ended.append(call.status)

    persister = Persister(db, on_call_ended=hook)  # type: ignore[arg-type]
    events = conversation(session_id)
    await persister.store(events[:4])
    await persister.store(events[2:7])  # overlapping redelivery
    await persister.store(events)
    await persister.store(events[-1:])  # the end, once more
    assert await _counts(db) == (10, 2)
    assert ended == ["completed"], "the end of the call is handled once"
    async with db.session() as session:
        calls = CallRepository(session)
        call = (await calls.by_sessions([session_id]))[session_id]
        turns = [(t.speaker, t.text, t.start_ms, t.end_ms) for t in await calls.turns(call.id)]
    assert call.status == "completed" and call.end_reason == "hangup"
    assert call.started_at is not None and call.ended_at is not None
    assert abs((call.ended_at - call.started_at).total_seconds() - 3.5) < 0.01
    assert turns == [("user", "Hello there", 400, 1500), ("agent", "Hi! How can I help?", 2000, 3000)]


async def test_the_end_may_arrive_before_the_start(db: Database) -> None:
    _, session_id = await _setup(db)
    persister = Persister(db)
    events = conversation(session_id)
    await persister.store(events[-1:])
    await persister.store(events[:-1])
    async with db.session() as session:
        call = (await CallRepository(session).by_sessions([session_id]))[session_id]
    assert call.status == "completed"
    assert await _counts(db) == (10, 2)


async def test_a_session_without_a_call_row_is_adopted(db: Database) -> None:
    org_id, _ = await _setup(db)
    await Persister(db, default_org_id=org_id).store(conversation("stray-session"))
    async with db.session() as session:
        call = (await CallRepository(session).by_sessions(["stray-session"]))["stray-session"]
    assert call.org_id == org_id and call.status == "completed"
    await Persister(db).store(conversation("dropped-session"))  # no default organization: dropped
    async with db.session() as session:
        assert await CallRepository(session).by_sessions(["dropped-session"]) == {}
