"""``/v1/usage`` and ``/v1/invoices``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import httpx

from parley.platform.runtime import Platform
from tests.timeline.samples import conversation


async def test_usage_and_a_monthly_invoice(client: httpx.AsyncClient, platform: Platform) -> None:
    for direction in ("inbound", "outbound"):
        call, _ = await platform.calls.create(
            platform.default_org_id, direction=direction, transport="twilio"
        )
        await platform.persister.store(conversation(call.session_id))
    usage = (await client.get("/v1/usage")).json()
    kinds = {line["kind"]: line for line in usage["lines"]}
    phone = {line["model"]: line for line in usage["lines"] if line["kind"] == "telephony_minutes"}
    assert set(phone) == {"inbound", "outbound"}, "carriers price each direction apart"
    assert all(line["quantity"] == 1.0 and line["calls"] == 1 for line in phone.values())
    assert Decimal(phone["outbound"]["cost_usd"]) > Decimal(phone["inbound"]["cost_usd"])
    assert kinds["asr_seconds"]["quantity"] == 2.8
    assert Decimal(usage["total_usd"]) == Decimal(usage["subtotal_usd"]) + Decimal(usage["markup_usd"]) > 0
    assert usage["currency"] == "INR" and len(usage["daily"]) == 1
    assert (await client.get("/v1/usage", params={"start": "2020-01-01", "end": "2020-02-01"})).json()[
        "lines"
    ] == []
    assert (
        await client.get("/v1/usage", params={"start": "2020-02-01", "end": "2020-01-01"})
    ).status_code == 422

    now = datetime.now(UTC)
    made = await client.post("/v1/invoices", json={"year": now.year, "month": now.month})
    invoice = made.json()
    assert made.status_code == 200 and invoice["status"] == "draft"
    assert invoice["total_usd"] == usage["total_usd"] and invoice["total"] == usage["total"]
    assert [i["id"] for i in (await client.get("/v1/invoices")).json()] == [invoice["id"]]
    as_json = (await client.get(f"/v1/invoices/{invoice['id']}")).json()
    assert as_json["number"] == invoice["number"]
    page = await client.get(f"/v1/invoices/{invoice['id']}", params={"format": "html"})
    assert page.headers["content-type"].startswith("text/html")
    assert invoice["number"] in page.text and f"{Decimal(invoice['total']):,.2f} INR" in page.text
    assert (await client.get("/v1/invoices/inv_nope")).status_code == 404
    assert (await client.post("/v1/invoices", json={"year": 2025, "month": 13})).status_code == 422
