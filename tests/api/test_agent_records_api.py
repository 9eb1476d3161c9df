"""``/v1/agents`` and what it refuses: the record of the operator's YAML or Python agent is neither
changed nor deleted through the API, and a webhook tool that sets a header Parley sets is refused when
saved, not on every call."""

from __future__ import annotations

import httpx
import pytest

from parley.engine.agent import AgentConfig
from parley.platform.runtime import Platform

FILE_RECORD = "is the record of the operator's YAML or Python agent"


async def test_the_record_of_a_file_agent_cannot_be_deleted(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    record, _ = await platform.agents.ensure(platform.default_org_id, AgentConfig(name="front-desk"))

    refused = await client.delete(f"/v1/agents/{record.id}")
    assert refused.status_code == 409 and FILE_RECORD in refused.json()["detail"], refused.text
    by_name = await client.delete("/v1/agents/front-desk")
    assert by_name.status_code == 409 and FILE_RECORD in by_name.json()["detail"]
    patched = await client.patch(f"/v1/agents/{record.id}", json={"description": "mine"})
    assert patched.status_code == 409 and patched.json()["detail"] == refused.json()["detail"]

    kept = await client.get(f"/v1/agents/{record.id}")
    assert kept.status_code == 200 and kept.json()["source"] == "file"
    again, _ = await platform.agents.ensure(platform.default_org_id, AgentConfig(name="front-desk"))
    assert again.id == record.id, "the next call is filed under the same record"


async def test_an_api_agent_is_still_deleted(client: httpx.AsyncClient) -> None:
    made = (await client.post("/v1/agents", json={"name": "support"})).json()
    assert (await client.delete(f"/v1/agents/{made['id']}")).status_code == 204
    assert (await client.get(f"/v1/agents/{made['id']}")).status_code == 404


def webhook_tools(headers: dict[str, str]) -> list[dict[str, object]]:
    return [{"name": "book", "kind": "webhook", "url": "https://api.example.com/book", "headers": headers}]


@pytest.mark.parametrize(
    "header", ["Content-Type", "host", "Parley-Signature", "PARLEY-CALL-ID", "User-Agent"]
)
async def test_a_webhook_tool_may_not_set_a_header_parley_sets(
    client: httpx.AsyncClient, header: str
) -> None:
    refused = await client.post(
        "/v1/agents", json={"name": "booker", "config": {"tools": webhook_tools({header: "t"})}}
    )
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert error["loc"][-1] == "headers" and "tools" in error["loc"]
    assert f"{header} is set by Parley and cannot be configured" in error["msg"]
    assert (await client.get("/v1/agents/booker")).status_code == 404, "nothing was saved"

    allowed = {"tools": webhook_tools({"Authorization": "api_token"})}
    saved = await client.post("/v1/agents", json={"name": "booker", "config": allowed})
    assert saved.status_code == 201, saved.text
    changed = {"tools": webhook_tools({"Authorization": "api_token", header: "t"})}
    patched = await client.patch(f"/v1/agents/{saved.json()['id']}", json={"config": changed})
    assert patched.status_code == 422 and header in patched.text
    assert (await client.get("/v1/agents/booker")).json()["version"] == 1
