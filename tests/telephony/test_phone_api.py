"""The REST API of phone calls: numbers, queued outbound calls (followed, cancelled), hanging up."""

from __future__ import annotations

from typing import Any

import httpx

from parley.platform.leads import BusinessIn
from parley.platform.runtime import Platform
from parley.store.lifecycle import CallStatus
from parley.store.tenants import TenantRepository
from tests.leads.conftest import business_body
from tests.telephony.conftest import BASE, CALLER, NUMBER, FakeLive, Phone, call_sid, make_app


async def test_phone_numbers_belong_to_one_organization_and_route_to_an_agent(phone: Phone) -> None:
    agent_id = await phone.agent()
    added = await phone.http.post(
        "/v1/phone-numbers", json={"number": "+1 415-555-0100", "agent": "support", "label": "front desk"}
    )
    assert added.status_code == 201, added.text
    number = added.json()
    assert (number["number"], number["agent_id"], number["label"]) == (NUMBER, agent_id, "front desk")

    again = await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "support"})
    assert again.status_code == 409
    nobody = await phone.http.post("/v1/phone-numbers", json={"number": "+14155550101", "agent": "nobody"})
    assert nobody.status_code == 404
    for bad in ("4155550100", "+1555", "+1 555 123 4567", "+1415555010\u0000"):
        refused = await phone.http.post("/v1/phone-numbers", json={"number": bad, "agent": "support"})
        assert refused.status_code == 422, bad
    assert [n["id"] for n in (await phone.http.get("/v1/phone-numbers")).json()["data"]] == [number["id"]]

    async with phone.platform.db.session() as session:
        other = await TenantRepository(session).ensure_org("other")
        key = (await TenantRepository(session).create_key(other.id, "theirs")).secret
    theirs = {"Authorization": f"Bearer {key}"}
    assert (await phone.http.get("/v1/phone-numbers", headers=theirs)).json()["data"] == []
    assert (await phone.http.delete(f"/v1/phone-numbers/{number['id']}", headers=theirs)).status_code == 404

    assert (await phone.http.delete(f"/v1/phone-numbers/{NUMBER}")).status_code == 204
    assert (await phone.http.delete(f"/v1/phone-numbers/{number['id']}")).status_code == 404
    assert (await phone.http.get("/v1/phone-numbers")).json()["data"] == []


async def test_a_queued_call_is_accepted_and_can_be_followed_and_cancelled(phone: Phone) -> None:
    await phone.agent()
    owned = await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "support"})
    assert owned.status_code == 201, "a call may show only a number of the organization"
    body: dict[str, Any] = {
        "agent": "support",
        "to": "+1 202 555 0123",
        "from": NUMBER,
        "priority": 5,
        "idempotency_key": "lead-42",
        "window": "10:00-18:00",
        "metadata": {"lead": 42},
    }
    queued = await phone.http.post("/v1/calls", json=body)
    assert queued.status_code == 202, queued.text
    job = queued.json()
    assert (job["to_number"], job["from_number"], job["status"]) == (CALLER, NUMBER, "pending")
    assert (job["priority"], job["window"], job["metadata"]) == (5, "10:00-18:00", {"lead": 42})
    assert job["time_zone"] == "America/New_York", "the window is read in the callee's time"

    repeat = await phone.http.post("/v1/calls", json=body)
    assert repeat.json()["id"] == job["id"], "the same idempotency key is the same job"
    assert (await phone.http.get(f"/v1/outbound-jobs/{job['id']}")).json()["id"] == job["id"]
    listed = (await phone.http.get("/v1/outbound-jobs", params={"status": "pending"})).json()["data"]
    assert [j["id"] for j in listed] == [job["id"]]

    canceled = await phone.http.post(f"/v1/outbound-jobs/{job['id']}/cancel")
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"
    assert phone.rest.placed == [], "nothing was dialed"


async def test_a_call_that_cannot_be_queued_says_why(phone: Phone) -> None:
    await phone.agent()
    for body, code in [
        ({"agent": "support", "to": "12345"}, 422),
        ({"agent": "support", "to": CALLER, "window": "9-5"}, 422),
        ({"agent": "support", "to": CALLER, "time_zone": "Mars/Olympus_Mons", "from": NUMBER}, 422),
        ({"agent": "support", "to": CALLER, "surprise": True}, 422),
        ({"agent": "nobody", "to": CALLER, "from": NUMBER}, 404),
        ({"agent": "support", "to": CALLER, "from": "+1 202 555 0188"}, 422),  # another's caller id
    ]:
        response = await phone.http.post("/v1/calls", json=body)
        assert response.status_code == code, (body, response.text)
    assert (await phone.http.get("/v1/outbound-jobs")).json()["data"] == []


async def test_without_twilio_no_call_is_queued(platform: Platform) -> None:
    app = make_app(platform)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=BASE,
        headers={"X-API-Key": platform.settings.api_key.get_secret_value()},  # type: ignore[union-attr]
    ) as http:
        response = await http.post("/v1/calls", json={"agent": "support", "to": CALLER})
        assert response.status_code == 503 and "Twilio" in response.json()["detail"]


async def test_a_live_phone_call_is_hung_up_through_twilio(phone: Phone) -> None:
    agent_id = await phone.agent()
    call, _ = await phone.platform.calls.create(
        phone.platform.default_org_id,
        direction="inbound",
        transport="twilio",
        agent_ref=agent_id,
        provider_call_id=call_sid(1),
    )
    await phone.platform.calls.set_status(call.id, CallStatus.IN_PROGRESS)
    live = FakeLive()
    phone.runtime.sessions[call.session_id] = live
    response = await phone.http.post(f"/v1/calls/{call.id}/hangup")
    assert response.status_code == 202, response.text
    assert phone.rest.hangups == [call_sid(1)] and live.ended == ["hung_up_by_api"]

    await phone.platform.calls.set_status(call.id, CallStatus.COMPLETED)
    assert (await phone.http.post(f"/v1/calls/{call.id}/hangup")).status_code == 409
    web, _ = await phone.platform.calls.create(
        phone.platform.default_org_id, direction="web", transport="websocket"
    )
    assert (await phone.http.post(f"/v1/calls/{web.id}/hangup")).status_code == 404
    assert phone.rest.hangups == [call_sid(1)]


async def test_a_premium_rate_number_is_never_dialed(phone: Phone) -> None:
    await phone.agent("front-desk")
    await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "front-desk"})
    premium = await phone.http.post("/v1/calls", json={"agent": "front-desk", "to": "+19005550178"})
    assert premium.status_code == 422, premium.text
    assert premium.json()["detail"].startswith("to is a premium-rate number")
    assert (await phone.http.get("/v1/outbound-jobs")).json()["data"] == []
    assert phone.rest.placed == [], "nothing was dialed"


async def test_the_organizations_own_number_is_never_dialed(phone: Phone) -> None:
    await phone.agent("front-desk")
    for own in (NUMBER, "+14155550103"):
        added = await phone.http.post("/v1/phone-numbers", json={"number": own, "agent": "front-desk"})
        assert added.status_code == 201, added.text
    loop = await phone.http.post(
        "/v1/calls", json={"agent": "front-desk", "to": "+1 415 555 0103", "from": NUMBER}
    )
    assert loop.status_code == 422, loop.text
    assert loop.json()["detail"] == "to is one of the organization's own numbers"
    assert (await phone.http.get("/v1/outbound-jobs")).json()["data"] == []
    assert phone.rest.placed == [], "nothing was dialed"


async def test_an_idempotency_key_queues_one_call_and_refuses_another(phone: Phone) -> None:
    await phone.agent()
    await phone.agent("sales")
    await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "support"})
    body: dict[str, Any] = {"agent": "support", "to": CALLER, "idempotency_key": "lead-7", "priority": 2}
    first = await phone.http.post("/v1/calls", json=body)
    assert first.status_code == 202, first.text
    again = await phone.http.post("/v1/calls", json=body)
    assert again.status_code == 200 and again.json() == first.json(), "the same request: the same job"
    for changed in (
        {"to": "+12025550124"},
        {"agent": "sales"},
        {"priority": 3},
        {"not_before": "2031-01-01T12:00:00Z"},
        {"window": "10:00-12:00"},
        {"metadata": {"lead": 8}},
    ):
        refused = await phone.http.post("/v1/calls", json=body | changed)
        assert refused.status_code == 409, (changed, refused.text)
        detail = refused.json()["detail"]
        assert "'lead-7' was used for a different call" in detail and first.json()["id"] in detail
    later = body | {"idempotency_key": "lead-8", "not_before": "2031-01-01T12:00:00Z"}
    assert (await phone.http.post("/v1/calls", json=later)).status_code == 202
    assert (await phone.http.post("/v1/calls", json=later)).status_code == 200
    soon = later | {"not_before": "2031-01-01T12:00:01Z"}
    assert (await phone.http.post("/v1/calls", json=soon)).status_code == 409
    jobs = (await phone.http.get("/v1/outbound-jobs")).json()["data"]
    assert len(jobs) == 2 and {j["to_number"] for j in jobs} == {CALLER}


async def test_an_agent_that_numbers_or_businesses_use_is_not_deleted(phone: Phone) -> None:
    agent_id = await phone.agent("tmp-agent")
    await phone.http.post("/v1/phone-numbers", json={"number": "+14155550103", "agent": "tmp-agent"})
    business = await phone.platform.leads.create_business(
        phone.platform.default_org_id, BusinessIn.model_validate(business_body(agent_id=agent_id))
    )
    refused = await phone.http.delete("/v1/agents/tmp-agent")
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "+14155550103" in detail and business.id in detail and "Route them to another agent" in detail
    assert (await phone.http.get(f"/v1/agents/{agent_id}")).status_code == 200, "still there"

    assert (await phone.http.delete("/v1/phone-numbers/+14155550103")).status_code == 204
    unrouted = await phone.http.patch(f"/v1/businesses/{business.id}", json={"agent_id": None})
    assert unrouted.status_code == 200 and unrouted.json()["agent_id"] is None
    assert (await phone.http.delete("/v1/agents/tmp-agent")).status_code == 204
    assert (await phone.http.get(f"/v1/agents/{agent_id}")).status_code == 404
