"""Database fixtures, parametrized over SQLite and PostgreSQL (star-imported by each suite's conftest).

Each test gets a fresh, migrated database: a copy of a template file (SQLite) or a database cloned from
a migrated template database (PostgreSQL), so no test sees another's rows.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import shutil
import uuid
from collections.abc import AsyncIterator, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from parley.store.db import Database
from tests.store import services

T = TypeVar("T")
DIALECTS = ["sqlite", "postgresql"]
_names = itertools.count(1)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when an event loop is running."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _plain_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def _admin(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(_plain_dsn(url))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    db = Database(url)
    try:
        await db.migrate()
    finally:
        await db.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    run_sync(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    server = services.postgres_url()
    name = f"parley_template_{uuid.uuid4().hex[:8]}"
    run_sync(_admin(server, f"CREATE DATABASE {name}"))
    run_sync(_migrate(make_url(server).set(database=name).render_as_string(hide_password=False)))
    yield name
    run_sync(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=DIALECTS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh, migrated database of each dialect."""
    if request.param == "sqlite":
        path = tmp_path / "parley.db"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    template = request.getfixturevalue("postgres_template")
    server = services.postgres_url()
    name = f"parley_test_{next(_names)}_{uuid.uuid4().hex[:6]}"
    run_sync(_admin(server, f"CREATE DATABASE {name} TEMPLATE {template}"))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    run_sync(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture(params=DIALECTS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no tables at all (for migration tests)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
        return
    server = services.postgres_url()
    name = f"parley_empty_{next(_names)}_{uuid.uuid4().hex[:6]}"
    run_sync(_admin(server, f"CREATE DATABASE {name}"))
    yield make_url(server).set(database=name).render_as_string(hide_password=False)
    run_sync(_admin(server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = Database(db_url)
    yield database
    await database.dispose()


@pytest.fixture
def redis_url() -> str:
    return services.redis_url()


__all__ = ["db", "db_url", "empty_db_url", "postgres_template", "redis_url", "run_sync", "sqlite_template"]
