"""An agent whose stored configuration no longer passes the configuration check (checks grow stricter
between releases: the agents listing shows it with a ``problem``) cannot start a call. Every way of
starting one says so, naming the agent and how to fix it, and leaves nothing half-created: no call on
the books, no outbound job queued."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import typer
from sqlalchemy import func, select
from typer.testing import CliRunner

from parley.commands.agents import agents_app
from parley.commands.calls import calls_app
from parley.commands.number_routing import numbers_app
from parley.config import get_settings
from parley.platform.agents import BrokenAgent
from parley.platform.phone import UnknownNumber
from parley.platform.runtime import Platform
from parley.store.models import AgentVersion, Call, OutboundJob
from tests.coaching.kit import api, make_agent, platform_of, room_server
from tests.store.fixtures import run_sync
from tests.telephony.conftest import CALLER, NUMBER, Phone, call_sid
from tests.telephony.test_webhooks import incoming, verbs

CYCLIC = {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}


async def broken_agent(phone: Phone) -> str:
    """An agent whose only version was stored before ``$ref`` cycles were refused."""
    agent_id = await phone.agent("old")
    async with phone.platform.db.session() as session:
        version = await session.scalar(select(AgentVersion).where(AgentVersion.agent_id == agent_id))
        assert version is not None
        tool = {"name": "lookup", "kind": "static", "result": "ok", "parameters": CYCLIC}
        version.config = {**version.config, "tools": [tool]}
    listed = (await phone.http.get("/v1/agents")).json()["data"]
    assert "leads back to itself" in listed[0]["problem"], "the listing shows the problem"
    return agent_id


async def rows(phone: Phone) -> tuple[int, int]:
    async with phone.platform.db.session() as session:
        calls = await session.scalar(select(func.count()).select_from(Call))
        jobs = await session.scalar(select(func.count()).select_from(OutboundJob))
    return int(calls or 0), int(jobs or 0)


def names_agent_and_fix(response: httpx.Response, agent_id: str) -> None:
    assert response.status_code == 409, response.text
    detail = response.json()["detail"]
    assert f"agent 'old' ({agent_id}) cannot start a call" in detail, detail
    assert "leads back to itself" in detail, detail
    assert f"PATCH /v1/agents/{agent_id}" in detail, detail


async def test_a_web_session_with_a_broken_agent_is_a_409_and_nothing_is_queued(phone: Phone) -> None:
    agent_id = await broken_agent(phone)
    refused = await phone.http.post(f"/v1/agents/{agent_id}/sessions")
    names_agent_and_fix(refused, agent_id)
    assert await rows(phone) == (0, 0)

    fixed = await phone.http.patch(f"/v1/agents/{agent_id}", json={"config": {"tools": []}})
    assert fixed.status_code == 200 and fixed.json()["problem"] is None, fixed.text
    started = await phone.http.post(f"/v1/agents/{agent_id}/sessions")
    assert started.status_code == 201, started.text
    assert started.json()["agent_version"] == 2


async def test_an_outbound_call_with_a_broken_agent_is_a_409_and_no_job_is_queued(phone: Phone) -> None:
    agent_id = await broken_agent(phone)
    await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "old"})
    for ref in (agent_id, "old"):
        refused = await phone.http.post("/v1/calls", json={"agent": ref, "to": CALLER, "from": NUMBER})
        names_agent_and_fix(refused, agent_id)
    assert await rows(phone) == (0, 0)
    assert phone.rest.placed == []


async def test_an_inbound_call_to_a_broken_agent_is_rejected_not_a_500(phone: Phone) -> None:
    agent_id = await broken_agent(phone)
    added = await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "old"})
    assert added.status_code == 201, added.text
    answer = await phone.webhook("/twilio/voice", incoming(call_sid(1)))
    assert verbs(answer) == ["Reject"], "the caller hears a rejection, not Twilio's application error"
    assert await rows(phone) == (0, 0)
    with pytest.raises(UnknownNumber) as refused:
        await phone.platform.phone.inbound(NUMBER, CALLER, call_sid(2))
    assert str(refused.value).startswith(f"the agent answering {NUMBER} cannot run: agent 'old' ({agent_id})")


async def test_the_call_service_refuses_before_writing_anything(phone: Phone) -> None:
    """What rooms and the live entry points call: a ``BrokenAgent`` (a ``Conflict``) saying why."""
    agent_id = await broken_agent(phone)
    with pytest.raises(BrokenAgent) as refused:
        await phone.platform.calls.create(
            phone.platform.default_org_id, direction="web", transport="websocket", agent_ref="old"
        )
    assert (refused.value.agent_id, refused.value.agent_name, refused.value.version) == (agent_id, "old", 1)
    assert "leads back to itself" in refused.value.problem
    assert await rows(phone) == (0, 0)


async def test_a_room_with_a_broken_agent_is_a_409_and_nothing_is_opened(tmp_path: Path) -> None:
    """Routes that do not catch it themselves (rooms) get the same 409 from the app's error handler."""
    async with room_server(tmp_path) as served, api(served) as http:
        made = await make_agent(http, "old")
        platform = platform_of(served)
        async with platform.db.session() as session:
            version = await session.scalar(select(AgentVersion).where(AgentVersion.agent_id == made["id"]))
            assert version is not None
            tool = {"name": "lookup", "kind": "static", "result": "ok", "parameters": CYCLIC}
            version.config = {**version.config, "tools": [tool]}
        refused = await http.post("/v1/rooms", json={"agent": "old", "name": "Renewal call"})
        names_agent_and_fix(refused, made["id"])
        assert (await http.get("/v1/rooms")).json()["data"] == []
        assert (await http.get("/v1/calls")).json()["data"] == []


def test_dialing_a_broken_agent_from_the_command_line_exits_1_and_queues_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    for name in ("PARLEY_DATABASE_URL", "PARLEY_TWILIO_CALLER_ID"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        root = typer.Typer()
        root.add_typer(agents_app, name="agents")
        root.add_typer(calls_app, name="calls")
        root.add_typer(numbers_app, name="numbers")
        assert CliRunner().invoke(root, ["agents", "create", "old"]).exit_code == 0
        assert CliRunner().invoke(root, ["numbers", "add", NUMBER, "--agent", "old"]).exit_code == 0

        async def break_it() -> None:
            platform = await Platform.open(get_settings(), consume=False, recover=False)
            try:
                async with platform.db.session() as session:
                    version = await session.scalar(select(AgentVersion))
                    assert version is not None
                    tool = {"name": "lookup", "kind": "static", "result": "ok", "parameters": CYCLIC}
                    version.config = {**version.config, "tools": [tool]}
            finally:
                await platform.close()

        run_sync(break_it())
        dialed = CliRunner().invoke(root, ["calls", "dial", "--agent", "old", "--to", CALLER])
        assert dialed.exit_code == 1, dialed.output
        [line] = dialed.stderr.strip().splitlines()
        assert line.startswith("error: agent 'old' (") and "cannot start a call" in line, line

        async def jobs() -> int:
            platform = await Platform.open(get_settings(), consume=False, recover=False)
            try:
                async with platform.db.session() as session:
                    return int(await session.scalar(select(func.count()).select_from(OutboundJob)) or 0)
            finally:
                await platform.close()

        assert run_sync(jobs()) == 0
    finally:
        get_settings.cache_clear()
