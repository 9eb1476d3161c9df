"""Supervising AI calls, test kit: a served platform with the fast scripted engines (``tests/coaching/kit``),
a caller on a browser session of a stored agent, and supervisors joining over their WebSockets.

The server runs in the test's process: the room clock, the session's play times and ``now()`` here are
one clock, so a frame's play time says when the caller (or a supervisor) was meant to hear it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from parley.engine.events import now
from parley.engine.session import EngineStack
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.transports.ws_client import LiveClient
from tests.coaching.kit import KEY, MS_PER_CHAR, Ear
from tests.engine.harness import agent
from tests.server.conftest import Served, fast_engines, serving

AGENT_HZ = 440.0
"""The tone synthesizer's frequency: the agent's voice."""
CALLER_HZ = 220.0
SUPERVISOR_HZ = 660.0
HEARD_DBFS = -35.0
LEAK_DBFS = -60.0
"""Speech tones are 0.3 full scale (-13.5 dBFS), the agent's voice 0.1 (-23 dBFS)."""


@contextlib.asynccontextmanager
async def ai_server(
    tmp_path: Path, lines: Sequence[str] = (), rules: Sequence[ScriptRule] = (), **overrides: Any
) -> AsyncIterator[tuple[Served, ScriptedModel]]:
    """The full server whose recogniser hears ``lines`` in order (the caller's and the supervisors'
    words alike), and its scripted model (``calls`` keeps what the agent was asked)."""
    engines: EngineStack = fast_engines(list(lines), list(rules), ms_per_char=MS_PER_CHAR)
    assert isinstance(engines.llm, ScriptedModel)
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY, **overrides) as served:
        yield served, engines.llm


async def make_ai_agent(http: httpx.AsyncClient, name: str = "support") -> str:
    """A stored agent (the fast tests' endpointing, an ``end_call`` tool); returns its id."""
    config = agent(name=name).model_dump(mode="json")
    made = await http.post("/v1/agents", json={"name": name, "config": config})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def start_call(served: Served, http: httpx.AsyncClient, agent_id: str) -> tuple[str, LiveClient, Ear]:
    """A browser call with the agent, minted through the API: its call id, the caller's client and what
    the caller's downlink carried."""
    grant = await http.post(f"/v1/agents/{agent_id}/sessions")
    assert grant.status_code == 201, grant.text
    ear = Ear()
    caller = await LiveClient.connect(served.ws, on_audio=ear)
    started = await caller.start(token=grant.json()["token"])
    assert started["type"] == "session.started", started
    return str(grant.json()["call_id"]), caller, ear


async def supervise(http: httpx.AsyncClient, call_id: str, **body: Any) -> dict[str, Any]:
    """``POST /v1/calls/{id}/supervisors``: the invitation."""
    made = await http.post(f"/v1/calls/{call_id}/supervisors", json=body)
    assert made.status_code == 201, made.text
    return dict(made.json())


async def switch(http: httpx.AsyncClient, call_id: str, supervisor_id: str, mode: str) -> float:
    """Switch a supervisor's mode; returns when the server answered."""
    changed = await http.patch(f"/v1/calls/{call_id}/supervisors/{supervisor_id}", json={"mode": mode})
    assert changed.status_code == 200, changed.text
    assert changed.json()["mode"] == mode
    return now()


async def call_record(http: httpx.AsyncClient, call_id: str, limit_s: float = 10.0) -> dict[str, Any]:
    """``GET /v1/calls/{id}`` once the call is over on the books, its recording stored."""
    deadline = now() + limit_s
    while True:
        response = await http.get(f"/v1/calls/{call_id}")
        assert response.status_code == 200, response.text
        record: dict[str, Any] = response.json()
        recording = record.get("recording") or {}
        if record["ended_at"] is not None and recording.get("status") == "ready":
            return record
        if now() > deadline:
            raise AssertionError(f"call {call_id} not settled on the books in {limit_s:g} s: {record}")
        await asyncio.sleep(0.1)  # the persister writes on its own schedule: nothing to await here


def events_of(record: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [dict(e["data"]) for e in record["events"] if e["type"] == kind]
