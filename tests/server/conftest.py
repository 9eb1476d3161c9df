"""A real uvicorn server on a free port, in the test's event loop, with fast deterministic engines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.providers.llm.scripted import ScriptRule
from parley.server.app import create_app, create_platform_app
from parley.server.lifecycle import DrainingServer, bound_port
from parley.server.runtime import LiveRuntime
from parley.server.stacks import AgentCatalog
from parley.transports.ws_client import LiveClient, StreamingMic
from tests.engine.harness import agent, stack


class QuietServer(DrainingServer):
    """Leaves the test runner's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@dataclass
class Served:
    base: str
    ws: str
    runtime: LiveRuntime
    server: QuietServer

    async def get(self, path: str) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.base) as http:
            return await http.get(path)

    async def client(self) -> LiveClient:
        return await LiveClient.connect(self.ws)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "max_concurrent_sessions": 5,
        "reconnect_grace_s": 5.0,
        "shutdown_grace_s": 0.3,
        "audio_output_lead_ms": 60,
        # many clients on one loopback address: per-address caps have their own tests (tests/security)
        "max_connections_per_ip": 1000,
        "max_sessions_per_ip": 1000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def fast_engines(lines: Sequence[str], rules: Sequence[ScriptRule], ms_per_char: float = 40.0) -> EngineStack:
    return stack(lines, rules, ms_per_char)


@contextlib.asynccontextmanager
async def serving(
    engines: EngineStack,
    *,
    agents: list[AgentConfig] | None = None,
    platform: bool = False,
    **overrides: Any,
) -> AsyncIterator[Served]:
    """Serve ``engines``; with ``platform`` the store and REST API too (pass ``data_dir``)."""

    async def factory(_: AgentConfig) -> EngineStack:
        return engines

    catalog = AgentCatalog(agents or [agent(name="assistant")])
    make = create_platform_app if platform else create_app
    app = make(settings(**overrides), catalog=catalog, stack_factory=factory)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws_per_message_deflate=False
    )
    server = QuietServer(config, drain=lambda: app.state.runtime.drain())
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    port = bound_port(server)
    runtime: LiveRuntime = app.state.runtime
    await asyncio.wait_for(runtime.engines.ready.wait(), 5)
    try:
        yield Served(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/sessions/ws", runtime, server)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)


@contextlib.asynccontextmanager
async def talking(client: LiveClient, rate: int = 16000) -> AsyncIterator[StreamingMic]:
    """A microphone streaming in real time for as long as the block runs."""
    mic = StreamingMic(client, rate)
    task = asyncio.create_task(mic.run())
    try:
        yield mic
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
