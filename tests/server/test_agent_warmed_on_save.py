"""An agent created or edited through the API is prepared for calls (models, prompt, greeting) as soon as
it is saved, in the background: the response does not wait for it, the first call finds it ready, a call
arriving while it is being prepared waits for that preparation instead of starting another, and one
that fails is logged with the agent's id, never failing the save."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from structlog.testing import capture_logs

from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.server.app import create_platform_app
from parley.server.lifecycle import bound_port
from parley.server.stacks import AgentCatalog
from parley.server.telephony import warm_agent
from parley.transports.ws_client import LiveClient
from tests.engine.harness import agent
from tests.server.conftest import QuietServer, Served, fast_engines, settings

KEY = "pk_agent-warmed-on-save-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
WAIT_S = 30.0
"""What a test waits for something the server does at once: generous, for a loaded machine."""


class HeldPreparation:
    """The server's stack factory: the default agent at once; any other agent's version is prepared
    only once ``release`` is set (or fails, for agents named in ``fails``). Each preparation asked for
    lands in ``asked``."""

    def __init__(self, engines: EngineStack, fails: frozenset[str] = frozenset()) -> None:
        self.engines = engines
        self.fails = fails
        self.asked: asyncio.Queue[AgentConfig] = asyncio.Queue()
        self.release = asyncio.Event()

    async def __call__(self, config: AgentConfig) -> EngineStack:
        if config.name == "assistant":
            return self.engines
        self.asked.put_nowait(config)
        if config.name in self.fails:
            raise RuntimeError(f"the models of {config.name} failed to load")
        await self.release.wait()
        return self.engines

    async def next_asked(self) -> AgentConfig:
        return await asyncio.wait_for(self.asked.get(), WAIT_S)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, factory: HeldPreparation) -> AsyncIterator[Served]:
    """``tests/server/conftest.serving`` with the platform, and this stack factory."""
    app = create_platform_app(
        settings(data_dir=tmp_path, api_key=KEY),
        catalog=AgentCatalog([agent(name="assistant")]),
        stack_factory=factory,
    )
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws_per_message_deflate=False
    )
    server = QuietServer(config, drain=lambda: app.state.runtime.drain())
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = bound_port(server)
        runtime = app.state.runtime
        await asyncio.wait_for(runtime.engines.ready.wait(), WAIT_S)
        yield Served(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/sessions/ws", runtime, server)
    finally:
        factory.release.set()
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_S)


async def save(served: Served, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.base, headers=HEADERS, timeout=WAIT_S) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


async def until_on_the_books(served: Served, agent_id: str, version: int) -> None:
    """Until a call with this version of the agent exists: its admission is under way."""
    async with httpx.AsyncClient(base_url=served.base, headers=HEADERS, timeout=WAIT_S) as http:
        async with asyncio.timeout(WAIT_S):
            while True:
                calls = (await http.get("/v1/calls", params={"agent_id": agent_id})).json()["data"]
                if any(call["agent_version"] == version for call in calls):
                    return
                await asyncio.sleep(0.02)


async def talk_briefly(client: LiveClient) -> str:
    """The greeting the call was answered with; then the call ends."""
    heard = str((await client.wait_for("agent.text", WAIT_S))["text"])
    await client.send({"type": "end"})
    await client.wait_closed()
    return heard


async def test_a_created_agent_is_prepared_before_its_first_call_without_holding_the_response(
    tmp_path: Path,
) -> None:
    factory = HeldPreparation(fast_engines([], []))
    async with serving(tmp_path, factory) as served:
        desk = agent(name="desk", first_message="Front desk, hello.").model_dump(mode="json")
        made = await save(served, "POST", "/v1/agents", {"name": "desk", "config": desk})
        # The response came back while the preparation it started is still held.
        prepared = await factory.next_asked()
        assert (prepared.name, prepared.first_message) == ("desk", "Front desk, hello.")
        assert not factory.release.is_set()

        factory.release.set()
        platform = served.runtime.platform
        assert platform is not None
        stored = (await platform.agents.get(platform.default_org_id, made["id"])).config
        assert isinstance(stored, AgentConfig)
        # What the outbound queue asks before it dials: the version is ready, nothing is prepared again.
        await asyncio.wait_for(warm_agent(served.runtime)(platform.default_org_id, stored), WAIT_S)
        client = await served.client()
        started = await client.start("desk")
        assert started["type"] == "session.started" and started["agent_version"] == 1, started
        assert await talk_briefly(client) == "Front desk, hello."
        assert factory.asked.empty(), "the version was prepared again for its first call"


async def test_an_edit_is_prepared_once_even_when_a_call_arrives_while_it_is(tmp_path: Path) -> None:
    factory = HeldPreparation(fast_engines([], []))
    async with serving(tmp_path, factory) as served:
        desk = agent(name="desk", first_message="Version one.").model_dump(mode="json")
        made = await save(served, "POST", "/v1/agents", {"name": "desk", "config": desk})
        assert (await factory.next_asked()).first_message == "Version one."
        factory.release.set()

        factory.release = asyncio.Event()  # the edit's preparation is held
        edited = await save(
            served, "PATCH", f"/v1/agents/{made['id']}", {"config": {"first_message": "Version two."}}
        )
        assert edited["version"] == 2
        assert (await factory.next_asked()).first_message == "Version two."

        client = await served.client()
        starting = asyncio.create_task(client.start("desk"))  # arrives while the edit is prepared
        await until_on_the_books(served, made["id"], version=2)  # admitted, waiting for its agent
        assert not starting.done(), "the call did not wait for its agent to be ready"
        factory.release.set()
        started = await asyncio.wait_for(starting, WAIT_S)
        assert started["type"] == "session.started" and started["agent_version"] == 2, started
        assert await talk_briefly(client) == "Version two."
        assert factory.asked.empty(), "the edited version was prepared twice"


async def test_a_version_that_fails_to_prepare_is_still_saved_and_the_failure_is_logged(
    tmp_path: Path,
) -> None:
    factory = HeldPreparation(fast_engines([], []), fails=frozenset({"broken"}))
    async with serving(tmp_path, factory) as served:
        with capture_logs() as logs:
            broken = agent(name="broken").model_dump(mode="json")
            made = await save(served, "POST", "/v1/agents", {"name": "broken", "config": broken})
            await factory.next_asked()
            async with asyncio.timeout(WAIT_S):
                while not (failed := [e for e in logs if e["event"] == "warming a saved agent failed"]):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)  # the log is a list: nothing to wait on
        assert made["version"] == 1
        assert failed[0]["agent_id"] == made["id"] and failed[0]["log_level"] == "error", failed


async def test_saves_are_prepared_one_at_a_time_and_only_in_their_latest_version(tmp_path: Path) -> None:
    """A tenant saving in a loop must not fill the CPU with preparations: while one is under way, the
    others wait, and an agent edited meanwhile is prepared once, as it now is."""
    factory = HeldPreparation(fast_engines([], []))
    async with serving(tmp_path, factory) as served:
        desk = agent(name="desk").model_dump(mode="json")
        await save(served, "POST", "/v1/agents", {"name": "desk", "config": desk})
        assert (await factory.next_asked()).name == "desk"  # held

        other = agent(name="other", first_message="First.").model_dump(mode="json")
        made = await save(served, "POST", "/v1/agents", {"name": "other", "config": other})
        for line in ("Second.", "Third."):
            await save(served, "PATCH", f"/v1/agents/{made['id']}", {"config": {"first_message": line}})
        await asyncio.sleep(0.2)
        assert factory.asked.empty(), "a second preparation ran while the first was under way"

        factory.release.set()
        assert (await factory.next_asked()).first_message == "Third."
        await asyncio.sleep(0.2)
        assert factory.asked.empty(), "an older version was prepared too"
