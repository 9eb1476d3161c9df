"""``/v1/businesses``, ``/v1/leads`` and the public form, as an integrator or a website sees them: what is
matched, what is queued to be sent, what is refused and why."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from structlog.testing import capture_logs

from parley.platform.leads import LeadIn
from parley.platform.runtime import Platform
from parley.store.leads import LeadRepository
from parley.store.models import Lead, LeadMatch, LeadNotification
from parley.store.tenants import TenantRepository
from tests.leads.conftest import OPERATOR, business_body, lead_body

SATURDAY_NOON_NEW_YORK = datetime(2026, 12, 12, 17, 0, tzinfo=UTC)


async def _add_business(client: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    made = await client.post("/v1/businesses", json=business_body(**changes))
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def _notifications(client: httpx.AsyncClient, lead_id: str) -> list[dict[str, Any]]:
    listed = await client.get(f"/v1/leads/{lead_id}/notifications")
    assert listed.status_code == 200, listed.text
    rows: list[dict[str, Any]] = listed.json()
    return rows


async def _count(platform: Platform, model: type[Any]) -> int:
    async with platform.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_a_lead_is_matched_and_its_notifications_are_queued(client: httpx.AsyncClient) -> None:
    plumber = await _add_business(client)
    await _add_business(client, name="Hudson HVAC", category="HVAC Repair")
    await _add_business(client, name="Lakeside Plumbing", latitude=41.8781, longitude=-87.6298)  # Chicago

    made = await client.post("/v1/leads", json=lead_body())

    assert made.status_code == 201, made.text
    lead = made.json()
    assert lead["status"] == "matched" and lead["source"] == "api"
    assert [m["business_id"] for m in lead["matches"]] == [plumber["id"]], "same category, in its area"
    assert lead["matches"][0]["open_at_submit"] is True
    assert lead["matches"][0]["distance_km"] == pytest.approx(6.5, abs=0.1)
    assert lead["time_zone"] == "America/New_York", "from the phone number (+1 201: New Jersey)"
    sent = await _notifications(client, lead["id"])
    assert sorted((n["kind"], n["channel"], n["recipient"], n["status"]) for n in sent) == [
        ("new_lead", "email", "desk@hudson.example.com", "pending"),
        ("new_lead", "sms", "+12125550100", "pending"),
    ]
    assert all(n["business_id"] == plumber["id"] for n in sent)


async def test_a_lead_in_a_served_postal_code_matches(client: httpx.AsyncClient) -> None:
    by_code = await _add_business(
        client, latitude=None, longitude=None, radius_km=None, postal_codes=["11216"]
    )
    made = await client.post(
        "/v1/leads", json=lead_body(latitude=None, longitude=None, postal_code=" 11216 ")
    )
    assert made.status_code == 201, made.text
    assert made.json()["matches"] == [
        {"business_id": by_code["id"], "distance_km": None, "open_at_submit": True}
    ]


async def test_when_the_area_is_closed_every_business_in_it_is_told(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    platform.leads.clock = lambda: SATURDAY_NOON_NEW_YORK
    a = await _add_business(client)
    b = await _add_business(client, name="Night Plumbers", hours={"sun": [["20:00", "04:00"]]})
    lead = (await client.post("/v1/leads", json=lead_body())).json()
    assert lead["status"] == "matched"
    assert {m["business_id"] for m in lead["matches"]} == {a["id"], b["id"]}
    assert not any(m["open_at_submit"] for m in lead["matches"])
    assert len(await _notifications(client, lead["id"])) == 4


async def test_an_unmatched_lead_is_kept_and_the_operator_told(client: httpx.AsyncClient) -> None:
    made = await client.post("/v1/leads", json=lead_body(category="roofing"))
    assert made.status_code == 201
    lead = made.json()
    assert lead["status"] == "unmatched" and lead["matches"] == []
    sent = await _notifications(client, lead["id"])
    assert [(n["kind"], n["channel"], n["recipient"], n["business_id"]) for n in sent] == [
        ("unmatched_lead", "email", OPERATOR, None)
    ]
    listed = (await client.get("/v1/leads", params={"status": "unmatched"})).json()["data"]
    assert [row["id"] for row in listed] == [lead["id"]]


async def test_without_an_operator_address_an_unmatched_lead_is_logged(platform: Platform) -> None:
    platform.leads.settings = platform.settings.model_copy(update={"operator_email": None})
    woken: list[int] = []
    platform.leads.wake = lambda: woken.append(1)
    with capture_logs() as logs:
        result = await platform.leads.submit(
            platform.default_org_id, LeadIn.model_validate(lead_body()), source="cli"
        )
    assert result.lead.status == "unmatched"
    assert await platform.leads.notifications(platform.default_org_id, result.lead.id) == []
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert warnings and warnings[0]["lead_id"] == result.lead.id
    assert woken == [], "nothing to send: the worker is not woken"


async def test_the_same_idempotency_key_gives_the_same_lead_once(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    await _add_business(client)
    woken: list[int] = []
    platform.leads.wake = lambda: woken.append(1)
    key = {"Idempotency-Key": "form-4711"}

    first = await client.post("/v1/leads", json=lead_body(), headers=key)
    again = await client.post("/v1/leads", json=lead_body(phone="(201) 555-0123"), headers=key)
    other = await client.post("/v1/leads", json=lead_body(description="Now the bath too."), headers=key)

    assert first.status_code == 201 and again.status_code == 200, again.text
    assert again.json()["id"] == first.json()["id"], "the same number spelled otherwise is the same lead"
    assert other.status_code == 409 and "form-4711" in other.json()["detail"]
    assert len(await _notifications(client, first.json()["id"])) == 2, "nothing queued twice"
    assert await _count(platform, Lead) == 1 and await _count(platform, LeadNotification) == 2
    assert woken == [1], "woken once, by the commit that queued something"


async def test_two_requests_racing_with_one_key_make_one_lead(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    await _add_business(client)
    lead = LeadIn.model_validate(lead_body())
    results = await asyncio.gather(
        *(
            platform.leads.submit(platform.default_org_id, lead, source="api", idempotency_key="race")
            for _ in "ab"
        )
    )
    assert sorted(r.created for r in results) == [False, True]
    assert results[0].lead.id == results[1].lead.id
    assert await _count(platform, Lead) == 1 and await _count(platform, LeadNotification) == 2


async def test_a_failure_writing_the_outbox_leaves_no_lead(
    client: httpx.AsyncClient, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _add_business(client)

    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("the outbox insert failed")

    monkeypatch.setattr(LeadRepository, "enqueue_notifications", broken)
    with pytest.raises(RuntimeError, match="outbox"):
        await platform.leads.submit(platform.default_org_id, LeadIn.model_validate(lead_body()), source="api")
    assert await _count(platform, Lead) == 0 and await _count(platform, LeadMatch) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"phone": "12345"}, "phone"),
        ({"phone": "+1 555 CALL NOW"}, "phone"),
        ({"email": "ada@@example"}, "email"),
        ({"category": "!!"}, "category"),
        ({"description": "x" * 2001}, "description"),
        ({"latitude": 91.0}, "latitude"),
    ],
)
async def test_bad_input_is_422_naming_the_field(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    await _add_business(client)  # an organization without one has no public form
    for http, url in ((client, "/v1/leads"), (anon, "/v1/public/leads/default")):
        refused = await http.post(url, json=lead_body(**changes))
        assert refused.status_code == 422, refused.text
        errors = refused.json()["detail"]
        assert errors[0]["loc"] == ["body", field]
        assert str(changes[field]) not in refused.text, "the value sent is not echoed"


async def test_a_national_number_is_read_in_the_default_region(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    made = await client.post("/v1/leads", json=lead_body(phone="(212) 555-0147", category="roofing"))
    assert made.json()["phone"] == "+12125550147"
    platform.leads.settings = platform.settings.model_copy(update={"default_region": "GB"})
    made = await client.post("/v1/leads", json=lead_body(phone="020 7183 8750", category="roofing"))
    assert made.json()["phone"] == "+442071838750" and made.json()["time_zone"] == "Europe/London"


async def test_businesses_are_listed_changed_and_deactivated(client: httpx.AsyncClient) -> None:
    plumber = await _add_business(client)
    assert plumber["category"] == "plumbing" and plumber["active"] is True
    refused = await client.post("/v1/businesses", json=business_body(notify_phone="555"))
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "notify_phone"]

    renamed = await client.patch(f"/v1/businesses/{plumber['id']}", json={"name": "Hudson & Sons"})
    assert renamed.status_code == 200 and renamed.json()["name"] == "Hudson & Sons"
    assert renamed.json()["radius_km"] == 25.0, "what was not given stays"
    pointless = await client.patch(
        f"/v1/businesses/{plumber['id']}", json={"latitude": None, "longitude": None}
    )
    assert pointless.status_code == 422, "a radius without a point"
    matched = (await client.post("/v1/leads", json=lead_body())).json()

    gone = await client.delete(f"/v1/businesses/{plumber['id']}")
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert (await client.get("/v1/businesses", params={"active": "true"})).json()["data"] == []
    assert (await client.get(f"/v1/businesses/{plumber['id']}")).json()["active"] is False
    after = (await client.post("/v1/leads", json=lead_body(name="Grace Hopper"))).json()
    assert after["status"] == "unmatched", "a deactivated business gets no new leads"

    by_business = (await client.get("/v1/leads", params={"business_id": plumber["id"]})).json()["data"]
    assert [row["id"] for row in by_business] == [matched["id"]], "its past leads stay"
    assert (await client.get("/v1/businesses/biz_missing")).status_code == 404


async def test_the_agent_that_calls_back_is_one_of_the_organization(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, platform: Platform
) -> None:
    assert (await client.post("/v1/businesses", json=business_body(agent_id="agt_nobody"))).status_code == 404
    agent = (await client.post("/v1/agents", json={"name": "callback"})).json()
    plumber = await _add_business(client, agent_id=agent["id"])
    assert plumber["agent_id"] == agent["id"]
    by_name = await _add_business(client, agent_id="callback", name="Named Plumbing")
    assert by_name["agent_id"] == agent["id"], "a name is taken, as numbers add and calls dial take one"
    async with platform.db.session() as session:
        tenants = TenantRepository(session)
        other = await tenants.create_key((await tenants.ensure_org("other")).id)
    theirs = {"Authorization": f"Bearer {other.secret}"}
    refused = await anon.post("/v1/businesses", json=business_body(agent_id=agent["id"]), headers=theirs)
    assert refused.status_code == 404, "another organization's agent is not found"


async def test_the_public_form_takes_leads_by_organization_and_limits_each_address(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, platform: Platform
) -> None:
    await _add_business(client)  # an organization without one has no public form
    made = await anon.post("/v1/public/leads/default", json=lead_body(), headers={"Idempotency-Key": "k1"})
    assert made.status_code == 201, made.text
    assert set(made.json()) == {"id", "received_at"}, "a visitor learns nothing of the businesses"
    again = await anon.post("/v1/public/leads/default", json=lead_body(), headers={"Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    by_id = await anon.post(f"/v1/public/leads/{platform.default_org_id}", json=lead_body(name="Grace"))
    assert by_id.status_code == 201
    stored = await platform.leads.lead(platform.default_org_id, made.json()["id"])
    assert stored.source == "form" and stored.client_ip == "127.0.0.1"

    limited = await anon.post("/v1/public/leads/default", json=lead_body(name="Edsger"))
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "60"
    assert await _count(platform, Lead) == 2


async def test_an_unknown_organization_is_404(anon: httpx.AsyncClient) -> None:
    assert (await anon.post("/v1/public/leads/nobody", json=lead_body())).status_code == 404


async def test_the_api_needs_a_key_and_shows_one_organization(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, platform: Platform
) -> None:
    for method, url in (("GET", "/v1/leads"), ("POST", "/v1/leads"), ("GET", "/v1/businesses")):
        assert (await anon.request(method, url, json=lead_body())).status_code == 401
    lead = (await client.post("/v1/leads", json=lead_body())).json()
    async with platform.db.session() as session:
        tenants = TenantRepository(session)
        other = await tenants.ensure_org("other")
        key = await tenants.create_key(other.id)
    theirs = {"Authorization": f"Bearer {key.secret}"}
    assert (await anon.get(f"/v1/leads/{lead['id']}", headers=theirs)).status_code == 404
    assert (await anon.get("/v1/leads", headers=theirs)).json()["data"] == []
    assert (await anon.get(f"/v1/leads/{lead['id']}/notifications", headers=theirs)).status_code == 404


async def test_an_idempotency_key_is_bounded(client: httpx.AsyncClient) -> None:
    refused = await client.post("/v1/leads", json=lead_body(), headers={"Idempotency-Key": "k" * 129})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_premium_rate_numbers_are_refused_for_leads_and_businesses(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, platform: Platform
) -> None:
    premium = "+19005550177"
    await _add_business(client)  # an organization without one has no public form
    for http, url in ((anon, "/v1/public/leads/default"), (client, "/v1/leads")):
        for spelling in (premium, "(900) 555-0177"):  # national numbers are read in the default region
            refused = await http.post(url, json=lead_body(phone=spelling))
            assert refused.status_code == 422, refused.text
            [error] = refused.json()["detail"]
            assert (error["loc"], error["type"]) == (["body", "phone"], "premium_rate")
            assert "premium-rate" in error["msg"] and "555" not in refused.text, "the value is not echoed"
    assert await _count(platform, Lead) == 0

    refused = await client.post("/v1/businesses", json=business_body(notify_phone=premium))
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "notify_phone"]
    plumber = await _add_business(client)
    changed = await client.patch(f"/v1/businesses/{plumber['id']}", json={"notify_phone": premium})
    assert changed.status_code == 422 and changed.json()["detail"][0]["type"] == "premium_rate"
    assert (await client.get(f"/v1/businesses/{plumber['id']}")).json()["notify_phone"] == "+12125550100"
