"""Migrations build the schema the models describe, from nothing and from the previous revision."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from parley.store.db import Database, head_revision
from parley.store.models import Base


async def _schema_diff(db: Database) -> list[object]:
    async with db.engine.connect() as connection:
        return await connection.run_sync(
            lambda c: compare_metadata(
                MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata
            )
        )


async def test_an_empty_database_upgrades_to_exactly_the_models(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    try:
        assert await db.current_revision() is None
        await db.migrate()
        assert await db.current_revision() == head_revision()
        assert await _schema_diff(db) == []
        await db.migrate()  # a second run is a no-op
        assert await db.current_revision() == head_revision()
        await db.downgrade("base")
        async with db.engine.connect() as c:
            tables = await c.run_sync(lambda sync: inspect(sync).get_table_names())
        assert tables == ["alembic_version"]
    finally:
        await db.dispose()


async def test_a_database_at_the_previous_revision_keeps_its_rows(empty_db_url: str) -> None:
    db = Database(empty_db_url)
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    try:
        await db.migrate("0001")
        async with db.engine.begin() as c:
            await c.execute(
                text(
                    "INSERT INTO organizations (id, slug, name, created_at) "
                    "VALUES ('org_1', 'acme', 'Acme', :now)"
                ),
                {"now": now},
            )
            await c.execute(
                text(
                    "INSERT INTO calls (id, org_id, session_id, direction, transport, status, created_at, "
                    "updated_at) VALUES ('call_1', 'org_1', 'call_1', 'inbound', 'twilio', 'completed', "
                    ":now, :now)"
                ),
                {"now": now},
            )
        await db.migrate()
        assert await db.current_revision() == head_revision()
        assert await _schema_diff(db) == []
        async with db.engine.connect() as c:
            row = (await c.execute(text("SELECT status, metrics FROM calls WHERE id = 'call_1'"))).one()
            assert row.status == "completed" and row.metrics is None
            await c.execute(text("SELECT count(*) FROM usage_lines"))
    finally:
        await db.dispose()


async def test_workers_started_together_on_a_new_database_both_come_up(empty_db_url: str) -> None:
    """Two ``parley serve`` processes on one empty PostgreSQL: one used to die creating alembic_version."""
    import asyncio

    if not empty_db_url.startswith("postgresql"):
        return  # one SQLite file is one process's
    workers = [Database(empty_db_url) for _ in range(3)]
    try:
        await asyncio.gather(*(db.migrate() for db in workers))
        assert {await db.current_revision() for db in workers} == {head_revision()}
    finally:
        await asyncio.gather(*(db.dispose() for db in workers))
