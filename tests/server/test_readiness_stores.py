"""``/readyz`` asks every store a worker needs, not only the database: with ``PARLEY_REDIS_URL`` set the
timeline runs on Redis, and a worker that cannot reach it loses every call's events. A store that is down
(or silent) makes the worker ``degraded``, naming the store, within a bounded time."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.server.conftest import fast_engines, serving
from tests.store import services

KEY = "pk_readiness-test-key"


def _refusing_url() -> str:
    """A Redis URL nothing listens at: connections are refused."""
    return f"redis://127.0.0.1:{services.free_port()}/0"


@asynccontextmanager
async def _silent_redis() -> AsyncIterator[str]:
    """A Redis URL whose server accepts connections and never answers (a hung or unroutable Redis)."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_worker_with_redis_up_is_ready(tmp_path: Path) -> None:
    redis = services.redis_url()
    async with serving(
        fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY, redis_url=redis
    ) as s:
        answer = await s.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "ready"


async def test_a_silent_redis_makes_the_worker_degraded_within_the_probe_timeout(tmp_path: Path) -> None:
    """A load balancer's probe must get an answer in time, not hang with a Redis that never replies."""
    async with (
        _silent_redis() as url,
        serving(fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY, redis_url=url) as served,
    ):
        started = time.monotonic()
        answer = await served.get("/readyz")
        took = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.json() == {"status": "degraded", "error": "redis: TimeoutError"}
    assert took < 4.0, f"/readyz took {took:.1f} s"


async def test_a_worker_that_cannot_reach_redis_is_degraded_naming_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(
        fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY, redis_url=_refusing_url()
    ) as served:
        redis_down = await served.get("/readyz")
        platform = served.runtime.platform
        assert platform is not None

        async def refused() -> None:
            raise ConnectionRefusedError(111, "Connect call failed")

        monkeypatch.setattr(platform.db, "ping", refused)
        both_down = await served.get("/readyz")
    assert redis_down.status_code == 503
    assert redis_down.json() == {"status": "degraded", "error": "redis: ConnectionError"}
    assert both_down.status_code == 503
    assert both_down.json() == {
        "status": "degraded",
        "error": "database: ConnectionRefusedError; redis: ConnectionError",
    }


async def test_a_database_that_does_not_answer_in_time_is_named_as_timed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serving(fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY) as served:
        platform = served.runtime.platform
        assert platform is not None

        async def hangs() -> None:
            await asyncio.sleep(30)

        monkeypatch.setattr(platform.db, "ping", hangs)
        started = time.monotonic()
        answer = await served.get("/readyz")
        took = time.monotonic() - started
    assert answer.status_code == 503
    assert answer.json() == {"status": "degraded", "error": "database: TimeoutError"}
    assert took < 4.0, f"/readyz took {took:.1f} s"
