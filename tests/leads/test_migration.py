"""Revision 0008 adds the leads tables to a database at 0007 without touching its rows, and a
notification cannot be written twice for one lead, business, kind and channel."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from parley.store.db import Database

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
LEAD_TABLES = {"businesses", "leads", "lead_matches", "lead_notifications", "notification_templates"}


async def _tables(db: Database) -> set[str]:
    async with db.engine.connect() as c:
        return set(await c.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_0008_upgrades_a_database_at_0007_and_back(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        await db.migrate("0007")
        async with db.engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO organizations (id, slug, name, created_at) "
                    "VALUES ('org_1', 'acme', 'Acme', :t)"
                ),
                {"t": NOW},
            )
        await db.migrate("0008")
        assert await db.current_revision() == "0008"
        assert await _tables(db) >= LEAD_TABLES
        async with db.engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO leads (id, org_id, name, phone, category, description, consent_to_call, "
                    "source, status, created_at, updated_at) VALUES ('lead_1', 'org_1', 'Ada', "
                    "'+12015550123', 'plumbing', '', true, 'api', 'unmatched', :t, :t)"
                ),
                {"t": NOW},
            )
        notification = (
            "INSERT INTO lead_notifications (id, org_id, lead_id, business_id, kind, channel, recipient, "
            "status, attempts, next_attempt_at, created_at) VALUES (:id, 'org_1', 'lead_1', :biz, "
            "'new_lead', 'email', 'a@example.com', 'pending', 0, :t, :t)"
        )
        async with db.engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO businesses (id, org_id, name, category, postal_codes, hours, time_zone, "
                    "notify_email, notify_phone, active, created_at, updated_at) VALUES ('biz_1', 'org_1', "
                    "'Hudson', 'plumbing', '[]', '{}', 'UTC', 'a@example.com', '+12125550100', true, :t, :t)"
                ),
                {"t": NOW},
            )
            await c.execute(text(notification), {"id": "ntf_1", "biz": "biz_1", "t": NOW})
        with pytest.raises(IntegrityError):
            async with db.engine.begin() as c:
                await c.execute(text(notification), {"id": "ntf_2", "biz": "biz_1", "t": NOW})
        await db.downgrade("0007")
        assert not LEAD_TABLES & await _tables(db)
        async with db.engine.connect() as c:
            assert (await c.execute(text("SELECT slug FROM organizations"))).scalar_one() == "acme"
    finally:
        await db.dispose()
