"""``/v1/agents``: CRUD with versions, pages, and web sessions for the voice page."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from parley.platform.runtime import Platform
from parley.store.models import AgentVersion


async def test_agents_crud_with_versions(client: httpx.AsyncClient) -> None:
    made = await client.post(
        "/v1/agents",
        json={
            "name": "support",
            "description": "helpdesk",
            "config": {
                "system_prompt": "Be kind.",
                "knowledge": ["Open 9-5."],
                "llm": {"provider": "openai", "options": {"model": "gpt-4o-mini"}},
            },
        },
    )
    assert made.status_code == 201, made.text
    agent = made.json()
    assert agent["version"] == 1 and agent["config"]["knowledge"] == ["Open 9-5."]
    assert (await client.post("/v1/agents", json={"name": "support"})).status_code == 409
    bad = await client.post("/v1/agents", json={"name": "x", "config": {"temperature": -1}})
    assert bad.status_code == 422

    updated = await client.patch(f"/v1/agents/{agent['id']}", json={"config": {"system_prompt": "Be brief."}})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    by_name = (await client.get("/v1/agents/support")).json()
    assert by_name["config"]["system_prompt"] == "Be brief." and by_name["id"] == agent["id"]
    assert by_name["config"]["knowledge"] == ["Open 9-5."], "a patch keeps what it does not name"
    assert by_name["config"]["llm"]["provider"] == "openai" and by_name["source"] == "api"
    old = (await client.get(f"/v1/agents/{agent['id']}", params={"version": 1})).json()
    assert old["config"]["system_prompt"] == "Be kind."
    versions = (await client.get(f"/v1/agents/{agent['id']}/versions")).json()
    assert [v["version"] for v in versions] == [1, 2]

    session = await client.post(f"/v1/agents/{agent['id']}/sessions")
    assert session.status_code == 201
    web = session.json()
    assert web["agent_version"] == 2 and web["status"] == "queued"
    [call] = (await client.get("/v1/calls")).json()["data"]
    assert call["id"] == web["call_id"] and call["session_id"] == web["session_id"]

    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 204
    assert (await client.get(f"/v1/agents/{agent['id']}")).status_code == 404
    assert (await client.delete(f"/v1/agents/{agent['id']}")).status_code == 404
    assert (await client.get(f"/v1/calls/{web['call_id']}")).json()["agent_version"] == 2


async def test_agent_pages(client: httpx.AsyncClient) -> None:
    for i in range(5):
        assert (await client.post("/v1/agents", json={"name": f"agent-{i}"})).status_code == 201
    names: list[str] = []
    cursor = None
    while True:
        page = (
            await client.get("/v1/agents", params={"limit": 2, **({"cursor": cursor} if cursor else {})})
        ).json()
        names += [a["name"] for a in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == [f"agent-{i}" for i in reversed(range(5))]
    assert (await client.get("/v1/agents", params={"cursor": "garbage"})).status_code == 400
    assert (await client.get("/v1/agents", params={"limit": 0})).status_code == 422


async def test_a_patch_changes_only_what_it_sends(client: httpx.AsyncClient) -> None:
    """``{"config": {"first_message": "Hello!"}}`` used to replace the whole configuration with
    defaults: the agent lost its prompt, tools and knowledge, and stopped being public."""
    tool = {"name": "book", "description": "Book a visit.", "kind": "static", "result": {"ok": True}}
    config = {
        "system_prompt": "Be kind.",
        "public": True,
        "knowledge": ["Open 9-5."],
        "tools": [tool],
        "llm": {"provider": "openai", "options": {"model": "gpt-4o-mini", "first_token_timeout_ms": 900}},
    }
    made = await client.post("/v1/agents", json={"name": "desk", "config": config})
    assert made.status_code == 201, made.text
    url = f"/v1/agents/{made.json()['id']}"

    greeted = (await client.patch(url, json={"config": {"first_message": "Hello!"}})).json()
    kept = greeted["config"]
    assert greeted["version"] == 2 and kept["first_message"] == "Hello!"
    assert (kept["system_prompt"], kept["public"], kept["knowledge"]) == ("Be kind.", True, ["Open 9-5."])
    assert [t["name"] for t in kept["tools"]] == ["book"]

    patch = {"config": {"llm": {"options": {"first_token_timeout_ms": 1200}}}}
    nested = (await client.patch(url, json=patch)).json()["config"]["llm"]
    assert nested["provider"] == "openai" and nested["options"]["model"] == "gpt-4o-mini"
    assert nested["options"]["first_token_timeout_ms"] == 1200

    reset = (await client.patch(url, json={"config": {"first_message": None, "tools": []}})).json()
    assert (
        reset["version"] == 4 and reset["config"]["first_message"] is None and reset["config"]["tools"] == []
    )

    bad = await client.patch(url, json={"config": {"temperature": "hot"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "config", "temperature"]
    assert "hot" not in bad.text, "the refusal names the field, never the value"
    key = await client.patch(url, json={"config": {"llm": {"options": {"api_key": "sk-secret-123456"}}}})
    assert key.status_code == 422 and "sk-secret-123456" not in key.text
    assert (await client.get(url)).json()["version"] == 4, "a refused patch makes no version"


async def test_a_tool_schema_that_cannot_be_validated_is_a_422_naming_the_field(
    client: httpx.AsyncClient,
) -> None:
    """A $ref that leads back to itself would crash validation at the tool's first call."""
    parameters = {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}
    tool = {"name": "lookup", "kind": "static", "result": "ok", "parameters": parameters}
    answer = await client.post("/v1/agents", json={"name": "cyclic", "config": {"tools": [tool]}})
    assert answer.status_code == 422, answer.text
    [error] = answer.json()["detail"]
    assert error["loc"] == ["body", "config", "tools", 0, "parameters"]
    assert "leads back to itself" in error["msg"]
    assert (await client.get("/v1/agents/cyclic")).status_code == 404
    # A pattern is kept (the model sees it) and saved: it is only never enforced by a backtracking regex.
    tool["parameters"] = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}
    saved = await client.post("/v1/agents", json={"name": "patterned", "config": {"tools": [tool]}})
    assert saved.status_code == 201, saved.text
    assert saved.json()["config"]["tools"][0]["parameters"] == tool["parameters"]


async def test_an_agent_stored_before_a_stricter_check_is_shown_with_its_problem_and_can_be_fixed(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    """One old agent never makes the organization's whole agent list a 500."""
    made = (await client.post("/v1/agents", json={"name": "old", "config": {"system_prompt": "Hi."}})).json()
    cyclic = {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}
    async with platform.db.session() as session:  # as a release without the $ref check stored it
        version = await session.scalar(select(AgentVersion).where(AgentVersion.agent_id == made["id"]))
        assert version is not None
        tool = {"name": "lookup", "kind": "static", "result": "ok", "parameters": cyclic}
        version.config = {**version.config, "tools": [tool]}

    listed = await client.get("/v1/agents")
    assert listed.status_code == 200, listed.text
    [shown] = listed.json()["data"]
    assert "leads back to itself" in shown["problem"] and shown["config"]["tools"][0]["parameters"] == cyclic
    assert (await client.get(f"/v1/agents/{made['id']}")).json()["problem"] == shown["problem"]

    fixed = await client.patch(f"/v1/agents/{made['id']}", json={"config": {"tools": []}})
    assert fixed.status_code == 200, fixed.text
    assert fixed.json()["problem"] is None and fixed.json()["version"] == 2


async def test_a_database_that_is_down_is_a_503_to_retry_not_a_500(
    client: httpx.AsyncClient, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def refused(*_: object, **__: object) -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    monkeypatch.setattr(platform.agents, "page", refused)
    answer = await client.get("/v1/agents")
    assert answer.status_code == 503 and answer.headers["retry-after"] == "5"
    assert "database is unavailable" in answer.json()["detail"] and "5432" not in answer.text
