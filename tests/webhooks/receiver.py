"""A local HTTP service that records every request it gets: a tenant's webhook endpoint or tool API.

It answers with ``statuses`` in turn (then 200), a JSON ``reply``, or holds requests unanswered while
``hold`` is set (a receiver that is slow, or a request in flight when a server is killed): those are
answered 503 only when ``released``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass, field
from typing import Any

import uvicorn

from parley.server.lifecycle import bound_port


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    statuses: list[int] = field(default_factory=list)
    reply: bytes = b'{"ok": true}'
    content_type: str = "application/json"
    received: list[Received] = field(default_factory=list)
    answered: list[tuple[Received, int]] = field(default_factory=list)
    """Requests that got an answer, with its status (a held request that never did is not here)."""
    hold: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = Received(
            scope["method"],
            scope["path"],
            scope["query_string"].decode(),
            {k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body,
        )
        self.received.append(request)
        self.arrived.set()
        held = self.hold
        if held:
            await self.released.wait()
        # A held request is answered (if its client is still there) only once released, and never with a
        # 2xx: it stands for a request whose answer never reached the sender.
        status = 503 if held else self.statuses.pop(0) if self.statuses else 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", self.content_type.encode())],
            }
        )
        await send({"type": "http.response.body", "body": self.reply})
        self.answered.append((request, status))
        self.changed.set()

    async def until(self, count: int, within_s: float = 20.0) -> None:
        """Until ``count`` requests were answered with a 2xx."""
        async with asyncio.timeout(within_s):
            while sum(1 for _, s in self.answered if 200 <= s < 300) < count:
                self.changed.clear()
                await self.changed.wait()


class _Quiet(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    server = _Quiet(uvicorn.Config(receiver, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    receiver.url = f"http://127.0.0.1:{bound_port(server)}"
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.should_exit = True
        await asyncio.wait_for(task, 10)
