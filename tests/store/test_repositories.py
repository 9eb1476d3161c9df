"""Repositories on both dialects: keyset pages, filters, idempotent events, API keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from parley.store.calls import CallFilters, CallRepository
from parley.store.db import Database
from parley.store.models import Call
from parley.store.queries import InvalidCursor
from parley.store.tenants import TenantRepository


async def _calls(db: Database, org_id: str, count: int, **fields: object) -> list[str]:
    ids = []
    async with db.session() as session:
        repo = CallRepository(session)
        for _ in range(count):
            call = await repo.create(
                org_id, direction=str(fields.get("direction", "inbound")), transport="twilio", agent_id=None
            )
            ids.append(call.id)
    return ids


async def test_pages_walk_every_call_once_newest_first(db: Database) -> None:
    async with db.session() as session:
        org = await TenantRepository(session).ensure_org("acme")
    ids = await _calls(db, org.id, 7)
    seen: list[str] = []
    cursor = None
    while True:
        async with db.session() as session:
            page, cursor = await CallRepository(session).page(org.id, CallFilters(), 3, cursor)
        seen += [c.id for c in page]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == 7
    assert seen[0] == ids[-1], "newest first"
    async with db.session() as session:
        with pytest.raises(InvalidCursor):
            await CallRepository(session).page(org.id, CallFilters(), 3, "not-a-cursor")


async def test_filters_and_tenants(db: Database) -> None:
    async with db.session() as session:
        tenants = TenantRepository(session)
        acme, other = await tenants.ensure_org("acme"), await tenants.ensure_org("other")
    inbound = await _calls(db, acme.id, 2)
    outbound = await _calls(db, acme.id, 1, direction="outbound")
    await _calls(db, other.id, 2)
    async with db.session() as session:
        old = await session.get(Call, inbound[0])
        assert old is not None
        old.created_at = datetime.now(UTC) - timedelta(days=40)
        old.status = "completed"
    async with db.session() as session:
        repo = CallRepository(session)

        async def ids(**filters: object) -> set[str]:
            page, _ = await repo.page(acme.id, CallFilters(**filters), 50, None)  # type: ignore[arg-type]
            return {c.id for c in page}

        assert await ids() == {*inbound, *outbound}
        assert await ids(direction="outbound") == set(outbound)
        assert await ids(statuses=["completed"]) == {inbound[0]}
        assert await ids(statuses=["queued", "completed"]) == {*inbound, *outbound}
        assert await ids(since=datetime.now(UTC) - timedelta(days=1)) == {inbound[1], *outbound}
        assert await ids(until=datetime.now(UTC) - timedelta(days=1)) == {inbound[0]}


async def test_redelivered_events_are_stored_once(db: Database) -> None:
    async with db.session() as session:
        org = await TenantRepository(session).ensure_org("acme")
    [call_id] = await _calls(db, org.id, 1)
    now = datetime.now(UTC)
    rows = [
        {"call_id": call_id, "seq": i, "type": "speech.started", "t": float(i), "at": now, "data": {"i": i}}
        for i in (1, 2, 3)
    ]
    for batch in (rows, rows[1:], rows):
        async with db.session() as session:
            await CallRepository(session).add_events(batch)
    async with db.session() as session:
        stored = await CallRepository(session).events(call_id)
    assert [(e.seq, e.data) for e in stored] == [(1, {"i": 1}), (2, {"i": 2}), (3, {"i": 3})]


async def test_api_keys_verify_until_revoked(db: Database) -> None:
    async with db.session() as session:
        tenants = TenantRepository(session)
        org = await tenants.ensure_org("acme")
        made = await tenants.create_key(org.id, "ci")
    assert made.secret.startswith("pk_") and made.row.key_hash != made.secret
    async with db.session() as session:
        tenants = TenantRepository(session)
        found = await tenants.verify_key(made.secret)
        assert found is not None and found.org_id == org.id and found.last_used_at is not None
        assert await tenants.verify_key(made.secret + "x") is None
        assert await tenants.revoke_key(org.id, made.row.id)
    async with db.session() as session:
        assert await TenantRepository(session).verify_key(made.secret) is None


async def test_the_same_organization_is_created_once(db: Database) -> None:
    async with db.session() as session:
        first = await TenantRepository(session).ensure_org("acme", "Acme Inc")
    async with db.session() as session:
        again = await TenantRepository(session).ensure_org("acme")
    assert again.id == first.id and again.name == "Acme Inc"
    async with db.session() as session:
        with pytest.raises(ValueError, match="slug"):
            await TenantRepository(session).ensure_org("Not A Slug")
