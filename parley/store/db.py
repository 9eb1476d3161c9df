"""The database: an async engine, a session factory, and migrations applied in-process.

SQLite (in the data directory) is the embedded default; PostgreSQL is the production database. The
same models, queries and migrations serve both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import NullPool

from parley.config import Settings

_HERE = Path(__file__).resolve().parent
MIGRATION_LOCK = 0x7061726C6579  # "parley": the advisory lock key migrations take on PostgreSQL


def database_url(settings: Settings) -> str:
    """The configured URL, or an SQLite file in the data directory."""
    if settings.database_url:
        return normalize_url(settings.database_url)
    path = (settings.data_dir / "parley.db").resolve()
    return f"sqlite+aiosqlite:///{path}"


def normalize_url(url: str) -> str:
    """Accept the URLs people paste (``postgres://``, ``sqlite:///`` …) and pick the async drivers."""
    for plain, driver in (
        ("postgres://", "postgresql+asyncpg://"),
        ("postgresql://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def alembic_config(url: str | None = None) -> Config:
    """Alembic configured in code, so migrations work from an installed package in any directory."""
    cfg = Config(str(_HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


class Database:
    """One engine and session factory per process (or per test)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        parsed = make_url(self.url)
        options: dict[str, Any] = {"echo": echo}
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # One file, many short transactions: a pool adds nothing but shared-cache surprises.
            options["poolclass"] = NullPool
            options["connect_args"] = {"timeout": 30}
        else:
            options["pool_pre_ping"] = True
        self.engine: AsyncEngine = create_async_engine(self.url, **options)
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(database_url(settings))

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work: committed when the block ends normally, rolled back when it raises."""
        async with self.sessions() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """One round trip to the database (raises when it cannot be reached)."""
        async with self.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    async def migrate(self, revision: str = "head") -> None:
        """Upgrade the schema. On PostgreSQL one process at a time: workers started together on a new
        database would otherwise both create ``alembic_version``, and one would fail to start."""
        async with self.engine.begin() as connection:
            if self.dialect == "postgresql":  # released when this transaction ends
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await connection.run_sync(_alembic, command.upgrade, self.url, revision)

    async def downgrade(self, revision: str) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(_alembic, command.downgrade, self.url, revision)

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as connection:
            return await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())

    async def dispose(self) -> None:
        await self.engine.dispose()


def _alembic(connection: Connection, action: Callable[[Config, str], None], url: str, revision: str) -> None:
    cfg = alembic_config(url)
    cfg.attributes["connection"] = connection
    action(cfg, revision)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
