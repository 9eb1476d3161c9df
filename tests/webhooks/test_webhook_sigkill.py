"""No webhook is lost to a crash, none is acknowledged twice: events are in the outbox, a server is killed
(SIGKILL) with their deliveries in flight, and the restarted server delivers every one exactly once.

The server is the real one in its own process (``sigkill_server.py``); this process is the receiver.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from parley.bench.server_process import READY
from parley.platform.runtime import Platform
from parley.store.webhooks import enqueue_event
from parley.webhooks.endpoints import EndpointIn, WebhookService
from parley.webhooks.guard import UrlPolicy
from parley.webhooks.signing import verify
from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.sigkill_server import settings

ROOT = Path(__file__).resolve().parents[2]
CALLS = 3
ANALYZED = 2
EVENTS = CALLS * 2 + ANALYZED  # call.started and call.ended per call, and the analyses


class ServerProcess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, data_dir: Path, database_url: str) -> ServerProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.webhooks.sigkill_server",
            str(data_dir),
            database_url,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        server = cls(process)
        try:
            async with asyncio.timeout(60):
                assert process.stdout is not None
                while not (line := (await process.stdout.readline()).decode()).startswith(READY):
                    assert line, f"the server exited before it served: {server.output}"
                    server.output.append(line.rstrip())
        except BaseException:
            await server.stop(signal.SIGKILL)
            raise
        server._reader = asyncio.create_task(server._read())
        return server

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode().rstrip())

    async def stop(self, sig: int) -> None:
        if self.process.returncode is None:
            os.kill(self.process.pid, sig)
        await asyncio.wait_for(self.process.wait(), 30)
        if self._reader is not None:
            await self._reader
        print(f"--- server {self.process.pid} (exit {self.process.returncode}) ---", *self.output, sep="\n")


async def until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.05)  # polling what the receiver got from another process


async def test_deliveries_in_flight_when_the_server_is_killed_arrive_exactly_once(
    db_url: str, tmp_path: Path
) -> None:
    receiver = Receiver(hold=True)
    async with receiving(receiver):
        config = settings(tmp_path, db_url)
        platform = await Platform.open(config, consume=False, recover=False)
        try:
            org = platform.default_org_id
            service = WebhookService(platform.db, platform.secrets, UrlPolicy.from_settings(config))
            endpoint = await service.create(
                org,
                EndpointIn(
                    url=receiver.url + "/hooks", events=["call.started", "call.ended", "call.analyzed"]
                ),
            )
            for _ in range(CALLS):
                call, _config = await platform.calls.create(org, direction="web", transport="websocket")
                await platform.calls.set_status(call.id, "in_progress")
                await platform.calls.set_status(call.id, "completed", reason="hangup")
            for n in range(ANALYZED):
                async with platform.db.session() as session:
                    await enqueue_event(session, org, "call.analyzed", {"n": n}, f"analysis-{n}")
        finally:
            await platform.close()

        server = await ServerProcess.start(tmp_path, db_url)
        try:
            await until(lambda: len(receiver.received) == EVENTS, 30, "every delivery is in flight")
        finally:
            await server.stop(signal.SIGKILL)
        assert receiver.answered == [], "nothing was acknowledged before the kill"

        receiver.hold = False
        server = await ServerProcess.start(tmp_path, db_url)
        try:
            await until(
                lambda: sum(1 for _, s in receiver.answered if s == 200) >= EVENTS, 30, "all delivered"
            )
        finally:
            await server.stop(signal.SIGTERM)

    delivered = [request for request, status in receiver.answered if status == 200]
    ids = Counter(request.headers["parley-event-id"] for request in delivered)
    assert len(ids) == EVENTS and set(ids.values()) == {1}, f"each event acknowledged once: {ids}"
    kinds = Counter(request.json()["type"] for request in delivered)
    assert kinds == {"call.started": CALLS, "call.ended": CALLS, "call.analyzed": ANALYZED}
    for request in delivered:
        verify(endpoint.secret, request.headers["parley-signature"], request.body)
        assert request.headers["parley-delivery-attempt"] == "2", "the killed attempt counted as the first"

    platform = await Platform.open(settings(tmp_path, db_url), consume=False, recover=False)
    try:
        log = await WebhookService(platform.db, platform.secrets, UrlPolicy()).deliveries(
            platform.default_org_id, endpoint.id, None, 50, None
        )
    finally:
        await platform.close()
    assert len(log.data) == EVENTS and {d.status for d in log.data} == {"delivered"}
    assert all([a.attempt for a in d.log] == [2] for d in log.data), "the lost attempt left no log line"
