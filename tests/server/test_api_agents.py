"""Agents made through the API or the CLI are first-class for live sessions.

``start {agent: "name"}`` (WebSocket) and a WebRTC offer's ``agent`` find them, per organization; the
call runs the version that was the agent's latest when it started, whatever changes later; an agent that
is not public still needs a session token (asked for by name, it is as unknown as a name nobody has); a
name nobody has is an error that lists what does exist.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from aiortc import RTCPeerConnection
from typer.testing import CliRunner

from parley.commands.agents import agents_app
from parley.config import get_settings
from parley.store.tenants import TenantRepository
from parley.transports.ws_client import LiveClient
from tests.engine.harness import agent
from tests.server.conftest import Served, fast_engines, serving

KEY = "pk_api-agents-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


@asynccontextmanager
async def served_with_store(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(
        fast_engines([], []), agents=[agent(name="assistant")], platform=True, data_dir=tmp_path, api_key=KEY
    ) as served:
        yield served


async def create(
    served: Served, name: str, headers: dict[str, str] = HEADERS, **config: Any
) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.base, headers=headers) as http:
        made = await http.post("/v1/agents", json={"name": name, "config": {"name": name, **config}})
        assert made.status_code == 201, made.text
        return dict(made.json())


async def update(served: Served, ref: str, **config: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
        current = (await http.get(f"/v1/agents/{ref}")).json()["config"]
        changed = await http.patch(f"/v1/agents/{ref}", json={"config": {**current, **config}})
        assert changed.status_code == 200, changed.text
        return dict(changed.json())


async def other_org_headers(served: Served) -> dict[str, str]:
    platform = served.runtime.platform
    assert platform is not None
    async with platform.db.session() as session:
        tenants = TenantRepository(session)
        org = await tenants.ensure_org("acme")
        key = await tenants.create_key(org.id, "test")
    return {"Authorization": f"Bearer {key.secret}"}


async def greeting(client: LiveClient) -> str:
    return str((await client.wait_for("agent.text", 10))["text"])


async def test_a_public_api_agent_answers_start_by_name_with_its_version_pinned(tmp_path: Path) -> None:
    async with served_with_store(tmp_path) as served:
        made = await create(served, "desk", public=True, first_message="Front desk, version one.")
        first = await served.client()
        started = await first.start("desk")
        assert started["type"] == "session.started", started
        assert started["agent"] == "desk"
        assert (started["agent_id"], started["agent_version"]) == (made["id"], 1)
        assert await greeting(first) == "Front desk, version one."

        await update(served, "desk", first_message="Front desk, version two.")
        second = await served.client()
        again = await second.start("desk")
        assert again["agent_version"] == 2, "a new call takes the latest version"
        assert await greeting(second) == "Front desk, version two."
        running = served.runtime.registry.get(first.session_id or "")
        assert running is not None and running.agent.first_message == "Front desk, version one.", (
            "the call in progress keeps the version it started with"
        )
        for client in (first, second):
            await client.send({"type": "end"})
            await client.wait_closed()

        async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
            calls = (await http.get("/v1/calls", params={"agent": "desk"})).json()["data"]
        assert sorted(c["agent_version"] for c in calls) == [1, 2]
        assert {(c["agent_id"], c["access"], c["transport"]) for c in calls} == {
            (made["id"], "public", "websocket")
        }


async def test_an_agent_made_with_the_cli_answers_the_server_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        async with served_with_store(tmp_path) as served:
            cli = typer.Typer()
            cli.add_typer(agents_app, name="agents")
            argv = ["agents", "create", "plumber", "--set", "public=true", "--set", "first_message=Plumbing."]
            made = await asyncio.to_thread(CliRunner().invoke, cli, argv)
            assert made.exit_code == 0, made.output
            client = await served.client()
            started = await client.start("plumber")
            assert started["type"] == "session.started" and started["agent_version"] == 1, started
            assert await greeting(client) == "Plumbing."
    finally:
        get_settings.cache_clear()


async def test_an_api_agent_that_is_not_public_needs_its_token(tmp_path: Path) -> None:
    async with served_with_store(tmp_path) as served:
        made = await create(served, "billing")
        refused = await (await served.client()).start("billing")
        unknown = await (await served.client()).start("payroll")
        assert refused["type"] == "error" and refused["code"] == "unknown_agent", "by name: as if none"
        assert refused["message"].replace("'billing'", "X") == unknown["message"].replace("'payroll'", "X")
        by_id = await (await served.client()).start(made["id"])
        assert by_id["type"] == "error" and by_id["code"] == "unauthorized"
        assert "not public" in by_id["message"] and "POST /v1/agents/{id}/sessions" in by_id["message"]

        async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
            web = (await http.post(f"/v1/agents/{made['id']}/sessions")).json()
        started = await (await served.client()).start("billing", token=web["token"])
        assert started["type"] == "session.started" and started["agent"] == "billing"


async def test_the_voice_page_config_does_not_tell_a_private_name_from_an_unknown_one(tmp_path: Path) -> None:
    """docs/security.md: stored agents are named to strangers only when public, so asking for a private
    agent by name answers exactly what a name nobody has answers."""
    async with served_with_store(tmp_path) as served:
        await create(served, "back-office")
        await create(served, "desk", public=True)
        private = (await served.get("/v1/realtime/config?agent=back-office")).json()
        unknown = (await served.get("/v1/realtime/config?agent=front-office")).json()
        assert private["agent_error"]["code"] == unknown["agent_error"]["code"] == "unknown_agent"
        assert private["agent_error"]["message"].replace("'back-office'", "X") == unknown["agent_error"][
            "message"
        ].replace("'front-office'", "X")
        assert "not public" not in private["agent_error"]["message"]
        assert private["agents"] == unknown["agents"] and "back-office" not in str(private["agents"])
        assert (await served.get("/v1/realtime/config?agent=desk")).json()["selected"] == "desk"


async def test_a_token_for_another_agent_than_the_one_named_is_refused(tmp_path: Path) -> None:
    async with served_with_store(tmp_path) as served:
        made = await create(served, "billing")
        async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
            web = (await http.post(f"/v1/agents/{made['id']}/sessions")).json()
        refused = await (await served.client()).start("desk", token=web["token"])
        assert refused["type"] == "error" and refused["code"] == "unknown_agent"
        assert "'billing'" in refused["message"] and "'desk'" in refused["message"]
        assert len(served.runtime.registry) == 0


async def test_an_unknown_name_lists_what_the_caller_may_pick(tmp_path: Path) -> None:
    async with served_with_store(tmp_path) as served:
        await create(served, "desk", public=True)
        await create(served, "back-office")  # not public: not offered to strangers
        await create(served, "acme-desk", headers=await other_org_headers(served), public=True)
        client = await served.client()
        refused = await client.start("dsek")
        assert refused["type"] == "error" and refused["code"] == "unknown_agent"
        assert "'dsek'" in refused["message"]
        assert "assistant" in refused["message"] and "desk" in refused["message"]
        assert "back-office" not in refused["message"] and "acme-desk" not in refused["message"]
        assert (await client.start("assistant"))["type"] == "session.started", "the connection stays usable"


async def test_names_are_per_organization_and_ids_reach_a_public_agent_of_any(tmp_path: Path) -> None:
    async with served_with_store(tmp_path) as served:
        acme = await other_org_headers(served)
        ours = await create(served, "desk", public=True, first_message="Operator desk.")
        theirs = await create(served, "desk", headers=acme, public=True, first_message="Acme desk.")
        private = await create(served, "vault", headers=acme)

        by_name = await served.client()
        assert (await by_name.start("desk"))["agent_id"] == ours["id"], "a name is the operator org's"
        assert await greeting(by_name) == "Operator desk."

        by_id = await served.client()
        started = await by_id.start(theirs["id"])
        assert (started["agent"], started["agent_id"]) == ("desk", theirs["id"])
        assert await greeting(by_id) == "Acme desk."

        refused = await (await served.client()).start(private["id"])
        assert refused["code"] == "unauthorized", "an id is no token for an agent that is not public"

        async with httpx.AsyncClient(base_url=served.base, headers=acme) as http:
            calls = (await http.get("/v1/calls")).json()["data"]
        assert [(c["agent_id"], c["access"]) for c in calls] == [(theirs["id"], "public")], (
            "the anonymous call is on the books of the agent's organization"
        )


async def test_a_webrtc_offer_finds_api_agents_and_says_when_one_is_unknown(tmp_path: Path) -> None:
    async with served_with_store(tmp_path) as served:
        await create(served, "desk", public=True)
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        offer = {"sdp": pc.localDescription.sdp, "type": "offer"}
        try:
            async with httpx.AsyncClient(base_url=served.base) as http:
                unknown = await http.post("/v1/sessions/webrtc", json={**offer, "agent": "dsek"})
                assert unknown.status_code == 404
                assert unknown.json()["code"] == "unknown_agent" and "desk" in unknown.json()["message"]
                answer = await http.post("/v1/sessions/webrtc", json={**offer, "agent": "desk"})
                assert answer.status_code == 200, answer.text
            live = served.runtime.registry.get(answer.json()["session_id"])
            assert live is not None and live.agent.name == "desk"
        finally:
            await pc.close()


async def test_the_voice_page_config_offers_api_agents_and_explains_a_bad_one(tmp_path: Path) -> None:
    async with served_with_store(tmp_path) as served:
        await create(served, "desk", public=True, system_prompt="You answer the front desk. Be brief.")
        await create(served, "back-office")
        theirs = await create(served, "shop", headers=await other_org_headers(served), public=True)

        config = (await served.get("/v1/realtime/config")).json()
        assert [(a["name"], a["ref"], a["source"]) for a in config["agents"]] == [
            ("assistant", "assistant", "file"),
            ("desk", "desk", "store"),
        ]
        assert config["agents"][1]["description"] == "", "a stored agent's prompt is not shown to anyone"
        assert "front desk" not in json.dumps(config)
        assert config["selected"] is None and config["default_agent"] == "assistant"

        picked = (await served.get("/v1/realtime/config?agent=desk")).json()
        assert picked["selected"] == "desk" and "agent_error" not in picked

        shared = (await served.get(f"/v1/realtime/config?agent={theirs['id']}")).json()
        assert shared["selected"] == theirs["id"]
        assert {"name": "shop", "ref": theirs["id"]}.items() <= shared["agents"][-1].items()

        unknown = (await served.get("/v1/realtime/config?agent=dsek")).json()
        assert unknown["selected"] is None
        assert unknown["agent_error"]["code"] == "unknown_agent"
        assert "desk" in unknown["agent_error"]["message"]
        private = (await served.get("/v1/realtime/config?agent=back-office")).json()
        assert private["agent_error"]["code"] == "unknown_agent", "a private name is not confirmed"


async def test_without_the_store_unknown_names_list_the_operators_agents() -> None:
    async with serving(
        fast_engines([], []), agents=[agent(name="assistant"), agent(name="concierge")]
    ) as served:
        refused = await (await served.client()).start("desk")
        assert refused["code"] == "unknown_agent"
        assert refused["message"] == "no agent named 'desk' (available: assistant, concierge)"
        config = (await served.get("/v1/realtime/config?agent=desk")).json()
        assert config["agent_error"]["message"] == refused["message"]
