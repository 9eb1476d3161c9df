"""The database: an async engine, a session factory, and migrations applied in-process.

SQLite (in the data directory) is the embedded default; PostgreSQL is the production database. The
same models, queries and migrations serve both.

A URL that cannot be used (it does not parse, names a database or driver Parley does not have) and a
database that cannot be reached when migrations start are ``DatabaseUnavailable``, whose message names
the setting to fix and never repeats the URL (it may hold a password). A PostgreSQL that answers "the
database system is starting up" (it listens a moment before it takes sessions, and while it replays its
log after a crash) is waited for, up to ``STARTUP_WAIT_S``: Parley and its database often start together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, NoSuchModuleError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_delay, wait_fixed

from parley.config import Settings

_HERE = Path(__file__).resolve().parent
MIGRATION_LOCK = 0x7061726C6579  # "parley": the advisory lock key migrations take on PostgreSQL
URL_FORM = "postgresql://user:password@host:5432/database or sqlite:///path/to/parley.db"
CANNOT_CONNECT_NOW = "57P03"
"""PostgreSQL's SQLSTATE for a server that is starting up, shutting down or recovering."""
STARTUP_WAIT_S = 30.0
STARTUP_POLL_S = 0.25

log = structlog.get_logger(__name__)


class DatabaseUnavailable(RuntimeError):
    """The configured database cannot be used: its URL does not parse or names a database or driver
    Parley does not have, or the database cannot be reached. ``setting`` is what to fix
    (``PARLEY_DATABASE_URL``); the message never holds the URL itself."""

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting} {problem}")
        self.setting = setting
        self.problem = problem


def database_setting(settings: Settings) -> str:
    """The setting the database comes from: the URL, or the data directory its SQLite file is in."""
    return "PARLEY_DATABASE_URL" if settings.database_url else "PARLEY_DATA_DIR"


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

    def __init__(self, url: str, *, echo: bool = False, setting: str = "the database URL") -> None:
        """``setting``: where ``url`` came from, named by ``DatabaseUnavailable``."""
        self.url = normalize_url(url)
        self.setting = setting
        try:
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
        except NoSuchModuleError as exc:
            raise DatabaseUnavailable(
                setting, f"names a database Parley does not support; write it as {URL_FORM}"
            ) from exc
        except (ArgumentError, ValueError) as exc:  # ValueError: a port that is no number (not echoed)
            raise DatabaseUnavailable(
                setting, f"is not a database URL Parley can read; write it as {URL_FORM}"
            ) from exc
        except ImportError as exc:
            raise DatabaseUnavailable(
                setting,
                f"needs the database driver {exc.name or 'it names'}, which is not installed "
                "(Parley uses asyncpg for PostgreSQL and aiosqlite for SQLite)",
            ) from exc
        except InvalidRequestError as exc:  # a driver that is not asyncio (psycopg2, pysqlite)
            raise DatabaseUnavailable(
                setting, f"names a database driver that is not asyncio; write it as {URL_FORM}"
            ) from exc
        except OSError as exc:  # the SQLite file's directory cannot be made
            raise DatabaseUnavailable(
                setting, f"points where the SQLite file cannot be created ({type(exc).__name__}: {exc})"
            ) from exc
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(database_url(settings), setting=database_setting(settings))

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
        database would otherwise both create ``alembic_version``, and one would fail to start. A database
        that cannot be reached is ``DatabaseUnavailable``: this is the first thing a process asks of it."""
        async with self._begin() as connection:
            if self.dialect == "postgresql":  # released when this transaction ends
                await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            await connection.run_sync(_alembic, command.upgrade, self.url, revision)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncConnection]:
        """A transaction on a connection of its own; failing to connect is ``DatabaseUnavailable``
        (what failed in the transaction itself is raised as it is)."""
        try:
            connection = await self._connect_when_started()
        except (OSError, TimeoutError, DBAPIError) as exc:
            raise DatabaseUnavailable(
                self.setting, f"names a database Parley cannot connect to ({_reason(exc)})"
            ) from exc
        try:
            async with connection.begin():
                yield connection
        finally:
            await connection.close()

    async def _connect_when_started(self) -> AsyncConnection:
        """A connection, waiting out a PostgreSQL that is still starting up (``STARTUP_WAIT_S`` at most);
        any other failure is raised at once."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(_starting_up),
            stop=stop_after_delay(STARTUP_WAIT_S),
            wait=wait_fixed(STARTUP_POLL_S),
            before_sleep=_log_first_wait,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self.engine.connect()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def downgrade(self, revision: str) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(_alembic, command.downgrade, self.url, revision)

    async def current_revision(self) -> str | None:
        async with self.engine.connect() as connection:
            return await connection.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())

    async def dispose(self) -> None:
        await self.engine.dispose()


def _starting_up(exc: BaseException) -> bool:
    return isinstance(exc, DBAPIError) and getattr(exc.orig, "sqlstate", None) == CANNOT_CONNECT_NOW


def _log_first_wait(state: RetryCallState) -> None:
    if state.attempt_number == 1:
        log.warning("the database is starting up; waiting for it", wait_at_most_s=STARTUP_WAIT_S)


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in one line: the driver's error, not SQLAlchemy's wrapper around it."""
    cause = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = " ".join(str(cause).split())
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__


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
