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
from tests.engine.harness import agent, speech, stack


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

    def api(self, key: str) -> httpx.AsyncClient:
        """A client of the REST API authenticated with ``key``, to use as ``async with``."""
        return httpx.AsyncClient(base_url=self.base, headers={"Authorization": f"Bearer {key}"})


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


async def say_until(
    served: Served, status: str, *, then_s: float = 0.0, limit_s: float = 10.0
) -> tuple[LiveClient, dict[str, Any]]:
    """A new client starts a call and says a second of speech, its microphone open until the agent's
    audio has ``status`` and ``then_s`` longer; returns the client and that ``agent.audio`` message."""
    client = await served.client()
    await client.start()
    async with talking(client) as mic:
        await mic.say(speech(1.0).pcm)
        reached = await client.wait_for("agent.audio", limit_s, status=status)
        if then_s:
            await asyncio.sleep(then_s)
    return client, reached


async def reconnect(served: Served, dropped: LiveClient) -> tuple[LiveClient, dict[str, Any]]:
    """A new client resumes ``dropped``'s session from what it last heard; returns it and the server's
    reply (``session.resumed`` or an error)."""
    client = await served.client()
    assert dropped.session_id and dropped.token
    reply = await client.resume(
        dropped.session_id, dropped.token, dropped.last_audio_seq, dropped.last_event_seq
    )
    return client, reply


async def ask_by_token(served: Served, token: str, text: str) -> tuple[LiveClient, dict[str, Any]]:
    """A call started with a session ``token``: after the agent's greeting the caller types ``text``;
    returns the client and the agent's answer."""
    client = await served.client()
    assert (await client.start(token=token))["type"] == "session.started"
    await client.wait_for("agent.text", 10)
    mark = len(client.messages)
    await client.send({"type": "text", "text": text})
    return client, await client.wait_for("agent.text", 10, since=mark)


async def hang_up(client: LiveClient) -> None:
    """End the call as a client does, wait until the server says it ended, and close."""
    await client.send({"type": "end"})
    await client.wait_for("session.ended", 5)
    await client.close()
