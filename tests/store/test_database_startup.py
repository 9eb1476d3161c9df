"""A PostgreSQL that is still starting up answers a new session with SQLSTATE 57P03 ("the database system
is starting up"): Parley waits for it, a bounded time, instead of failing to start. The server here is a
real PostgreSQL behind a small proxy that plays that answer (PostgreSQL's wire protocol, ErrorResponse:
https://www.postgresql.org/docs/current/protocol-message-formats.html) to the first connections."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy.engine import make_url

from parley.store import db as db_module
from parley.store.db import Database, DatabaseUnavailable

SSL_REQUEST, GSS_REQUEST = 80877103, 80877104


def _starting_up_error() -> bytes:
    fields = b"SFATAL\0VFATAL\0C57P03\0Mthe database system is starting up\0\0"
    return b"E" + struct.pack("!I", 4 + len(fields)) + fields


@dataclass
class StartingUp:
    """Says "starting up" to the first ``refusals`` connections, then passes bytes to the real server."""

    host: str
    port: int
    refusals: int
    refused: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.refused < self.refusals:
                self.refused += 1
                while True:  # SSL and GSS requests get "N" (not here); the startup message gets the error
                    length = struct.unpack("!I", await reader.readexactly(4))[0]
                    body = await reader.readexactly(length - 4)
                    if struct.unpack("!I", body[:4])[0] in (SSL_REQUEST, GSS_REQUEST):
                        writer.write(b"N")
                        continue
                    writer.write(_starting_up_error())
                    await writer.drain()
                    return
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        sink.close()


@contextlib.asynccontextmanager
async def starting_up(url: str, refusals: int) -> AsyncIterator[tuple[str, StartingUp]]:
    """``url`` by way of a proxy that refuses its first ``refusals`` connections as a starting server."""
    parsed = make_url(url)
    proxy = StartingUp(parsed.host or "127.0.0.1", parsed.port or 5432, refusals)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield parsed.set(port=port).render_as_string(hide_password=False), proxy
    finally:
        server.close()


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_a_database_still_starting_up_is_waited_for(empty_db_url: str) -> None:
    async with starting_up(empty_db_url, refusals=3) as (url, proxy):
        database = Database(url)
        try:
            await database.migrate()
            assert await database.current_revision() is not None, "migrated once the server took sessions"
        finally:
            await database.dispose()
    assert proxy.refused == 3


@pytest.mark.parametrize("empty_db_url", ["postgresql"], indirect=True)
async def test_a_database_that_never_finishes_starting_is_a_clear_error(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_module, "STARTUP_WAIT_S", 1.0)
    async with starting_up(empty_db_url, refusals=1_000) as (url, proxy):
        database = Database(url, setting="PARLEY_DATABASE_URL")
        try:
            with pytest.raises(DatabaseUnavailable) as raised:
                await database.migrate()
        finally:
            await database.dispose()
    assert "PARLEY_DATABASE_URL" in str(raised.value) and "starting up" in str(raised.value)
    assert 2 <= proxy.refused <= 10, "asked again while it started, then gave up"
