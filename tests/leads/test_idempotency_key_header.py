"""An empty or blank ``Idempotency-Key`` header is a client bug: refused (422 naming the header) on every
route that reads it, never taken as "no key" (a retried lead would then be made, and sent, twice)."""

from __future__ import annotations

import httpx
import pytest

from tests.leads.conftest import lead_body

BLANKS = {"empty": "", "spaces": "   ", "tab": "\t"}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("key", BLANKS.values(), ids=BLANKS.keys())
@pytest.mark.parametrize("path", ["/v1/leads", "/v1/public/leads/default"])
async def test_an_empty_idempotency_key_is_refused_naming_the_header(
    path: str, key: str, client: httpx.AsyncClient
) -> None:
    refused = await client.post(path, json=lead_body(), headers={"Idempotency-Key": key})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert error["loc"] == ["header", "Idempotency-Key"]
    assert error["msg"].startswith("Idempotency-Key is empty"), error
    assert (await client.get("/v1/leads")).json()["data"] == [], "no lead was made"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_key_or_no_key_is_still_accepted(client: httpx.AsyncClient) -> None:
    first = await client.post("/v1/leads", json=lead_body(), headers={"Idempotency-Key": "form-4711"})
    assert first.status_code == 201, first.text
    again = await client.post("/v1/leads", json=lead_body(), headers={"Idempotency-Key": "form-4711"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    without = await client.post("/v1/leads", json=lead_body())
    assert without.status_code == 201 and without.json()["id"] != first.json()["id"]
