"""Every route needs an API key, and a key sees only its own organization."""

from __future__ import annotations

import httpx

from parley.platform.runtime import Platform
from parley.store.tenants import TenantRepository


async def test_keys_gate_the_api_and_separate_tenants(client: httpx.AsyncClient, platform: Platform) -> None:
    bare = {"Authorization": ""}
    response = await client.get("/v1/agents", headers=bare)
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/v1/agents", headers={"Authorization": "Bearer pk_wrong"})).status_code == 401

    created = await client.post("/v1/agents", json={"name": "default-org-agent"})
    assert created.status_code == 201
    async with platform.db.session() as session:
        tenants = TenantRepository(session)
        other = await tenants.ensure_org("other")
        other_key = await tenants.create_key(other.id, "theirs")
        own_key = await tenants.create_key(platform.default_org_id, "ours")

    as_other = {"Authorization": "", "X-API-Key": other_key.secret}
    assert (await client.get("/v1/agents", headers=as_other)).json()["data"] == []
    assert (await client.get(f"/v1/agents/{created.json()['id']}", headers=as_other)).status_code == 404
    assert (await client.get("/v1/calls", headers=as_other)).status_code == 200

    as_own = {"Authorization": f"Bearer {own_key.secret}"}
    [agent] = (await client.get("/v1/agents", headers=as_own)).json()["data"]
    assert agent["name"] == "default-org-agent"
    async with platform.db.session() as session:
        await TenantRepository(session).revoke_key(platform.default_org_id, own_key.row.id)
    assert (await client.get("/v1/agents", headers=as_own)).status_code == 401


async def test_the_api_is_documented(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    paths = schema["paths"]
    for path, method in [
        ("/v1/agents", "post"),
        ("/v1/agents", "get"),
        ("/v1/agents/{agent_id}", "patch"),
        ("/v1/agents/{agent_id}/versions", "get"),
        ("/v1/agents/{agent_id}/sessions", "post"),
        ("/v1/calls", "get"),
        ("/v1/calls/{call_id}", "get"),
        ("/v1/calls/{call_id}/events", "get"),
        ("/v1/calls/{call_id}/recording", "get"),
        ("/v1/usage", "get"),
        ("/v1/invoices", "post"),
        ("/v1/invoices/{invoice_id}", "get"),
    ]:
        operation = paths[path][method]
        assert operation.get("description") or operation.get("summary"), f"{method} {path}"
        assert {"HTTPBearer": []} in operation["security"] and {"APIKeyHeader": []} in operation["security"]
    assert "text/event-stream" in paths["/v1/calls/{call_id}/events"]["get"]["responses"]["200"]["content"]
    listing = paths["/v1/calls"]["get"]["parameters"]
    assert {p["name"] for p in listing} >= {
        "agent_id",
        "status",
        "direction",
        "since",
        "until",
        "limit",
        "cursor",
    }
    assert "CallDetail" in schema["components"]["schemas"]
