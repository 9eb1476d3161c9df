"""Call status: valid transitions apply, duplicates and late updates change nothing, rewrites are refused."""

from __future__ import annotations

import pytest

from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.lifecycle import CallStatus, Decision, InvalidStatusTransition, decide
from parley.store.tenants import TenantRepository


@pytest.mark.parametrize(
    ("current", "new", "expected"),
    [
        ("queued", "ringing", Decision.APPLY),
        ("queued", "in_progress", Decision.APPLY),
        ("ringing", "in_progress", Decision.APPLY),
        ("ringing", "no_answer", Decision.APPLY),
        ("ringing", "busy", Decision.APPLY),
        ("in_progress", "completed", Decision.APPLY),
        ("in_progress", "failed", Decision.APPLY),
        ("queued", "canceled", Decision.APPLY),
        ("completed", "completed", Decision.DUPLICATE),
        ("completed", "ringing", Decision.STALE),
        ("completed", "in_progress", Decision.STALE),
        ("in_progress", "ringing", Decision.STALE),
        ("in_progress", "queued", Decision.STALE),
    ],
)
def test_decisions(current: str, new: str, expected: Decision) -> None:
    assert decide(current, new) is expected


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("completed", "failed"),
        ("failed", "completed"),
        ("busy", "no_answer"),
        ("queued", "completed"),
        ("in_progress", "busy"),
        ("in_progress", "no_answer"),
        ("canceled", "completed"),
    ],
)
def test_rewriting_history_is_refused(current: str, new: str) -> None:
    with pytest.raises(InvalidStatusTransition):
        decide(current, new)


async def test_a_call_walks_its_lifecycle_and_shrugs_off_late_updates(db: Database) -> None:
    async with db.session() as session:
        org = await TenantRepository(session).ensure_org("acme")
        call = await CallRepository(session).create(
            org.id, direction="outbound", transport="twilio", to_number="+15550100"
        )
    for status in ("ringing", "in_progress"):
        async with db.session() as session:
            calls = CallRepository(session)
            loaded = await calls.get(call.id)
            assert loaded is not None
            assert await calls.set_status(loaded, status) is Decision.APPLY
    async with db.session() as session:
        calls = CallRepository(session)
        loaded = await calls.get(call.id)
        assert loaded is not None
        assert await calls.set_status(loaded, "completed", reason="hangup") is Decision.APPLY
        assert await calls.set_status(loaded, "completed", reason="again") is Decision.DUPLICATE
        assert await calls.set_status(loaded, "ringing") is Decision.STALE
        with pytest.raises(InvalidStatusTransition):
            await calls.set_status(loaded, CallStatus.FAILED)
    async with db.session() as session:
        final = await CallRepository(session).get(call.id)
        assert final is not None
        assert final.status == "completed" and final.end_reason == "hangup"
        assert final.ringing_at is not None and final.started_at is not None and final.ended_at is not None
        assert final.ringing_at <= final.started_at <= final.ended_at
        assert final.ended_at.tzinfo is not None
