"""The live event feed over a real HTTP server: follows a running call, and resumes with Last-Event-ID."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn

from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.providers.llm.scripted import ScriptRule
from tests.api.conftest import BOOT_KEY, make_app
from tests.api.sse import Message, messages
from tests.engine.harness import agent, speech
from tests.platform.live import run_live_call
from tests.store.services import free_port


@pytest.fixture
async def base_url(platform: Platform) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(make_app(platform), host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110  (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await serving


async def _read(http: httpx.AsyncClient, url: str, headers: dict[str, str], until: str) -> list[Message]:
    got: list[Message] = []
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        async for message in messages(response.aiter_lines()):
            got.append(message)
            if message.event == until:
                break
    return got


async def test_a_running_call_is_followed_live_and_resumed_after_a_drop(
    platform: Platform, base_url: str
) -> None:
    await platform.agents.create(platform.default_org_id, AgentCreate(name="a", config=agent()))
    live = await platform.live_call(agent_ref="a")
    call = asyncio.create_task(
        run_live_call(
            platform, None, ["Hello?"], [ScriptRule.say("Hello", "Hi there.")], [speech(0.8)], live=live
        )
    )
    url = f"{base_url}/v1/calls/{live.call_id}/events"
    auth = {"Authorization": f"Bearer {BOOT_KEY}"}
    async with httpx.AsyncClient(timeout=20) as http:
        first = await _read(http, url, auth, until="transcript.final")  # the connection drops here
        assert not call.done(), "this part was followed live"
        rest = await _read(http, url, {**auth, "Last-Event-ID": first[-1].id or ""}, until="end")
    await call
    await platform.settle()
    ids = [int(m.id or 0) for m in first + rest[:-1]]
    assert ids == list(range(1, len(ids) + 1)), "no gaps and no repeats across the reconnect"
    assert rest[-2].event == "session.ended" and rest[-1].event == "end"
    stored = (await platform.calls.detail(platform.default_org_id, live.call_id)).events
    assert [e.type for e in stored] == [m.event for m in first + rest[:-1]]
    assert first[0].data["t_ms"] == 0.0 and rest[-2].data["t_ms"] > 1000
