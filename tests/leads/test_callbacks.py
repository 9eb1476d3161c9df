"""AI call-backs of leads on a real store (both dialects) with a fake carrier: who may ask, what is queued,
what the lead and the business learn when the call is over; the signed links and the business's page.

Times are explicit: the lead arrives on a Tuesday at noon in New York (the conftest's clock) and the
queue dispatches at that moment, inside the default calling window in the lead's time zone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.jobs.outbound import OutboundQueue
from parley.platform.callbacks import call_result
from parley.platform.leads import BusinessIn, LeadIn
from parley.platform.links import (
    LinkExpired,
    LinkRefused,
    business_path,
    callback_link,
    callback_query,
    verify_business,
    verify_callback,
)
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.providers.llm.base import LanguageModel
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus
from parley.store.models import Call, Lead, LeadNotification, OutboundJob
from tests.engine.harness import agent
from tests.jobs.test_outbound import FakeDialer
from tests.leads.conftest import (
    CALLBACK_PUBLIC_URL,
    TUESDAY_NOON_NEW_YORK,
    business_body,
    callback_settings,
    lead_body,
    platform_app,
)

PUBLIC = CALLBACK_PUBLIC_URL
ANALYSIS = {
    "summary": True,
    "structured_data_schema": {
        "type": "object",
        "properties": {"appointment": {"type": "string"}},
        "required": ["appointment"],
    },
}
ANALYST = [
    ScriptRule.say("Summarize", "Ada booked a plumber for Thursday at 6 pm."),
    ScriptRule.say("JSON schema", '{"appointment": "Thursday 18:00"}'),
]


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return callback_settings(db_url, tmp_path, outbound_max_attempts=2, outbound_retry_backoff_s=[60.0])


@pytest.fixture
def dialer() -> FakeDialer:
    return FakeDialer()


@pytest.fixture
def queue(platform: Platform, dialer: FakeDialer) -> OutboundQueue:
    return OutboundQueue(platform, platform.settings, dialer)


@pytest.fixture
def app(platform: Platform, queue: OutboundQueue, dialer: FakeDialer) -> FastAPI:
    """The platform's routers, with the outbound queue and a (fake) carrier, as the server has them."""
    return platform_app(platform, queue, dialer)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """No key: a business opening the links it was sent."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as http:
        yield http


async def plumber(
    platform: Platform, *, analysis: bool = True, with_agent: bool = True, **changes: Any
) -> str:
    """A business whose agent calls its leads back; returns its id."""
    org = platform.default_org_id
    agent_id = None
    if with_agent:
        name = str(changes.get("name", "Hudson Plumbing")).lower().replace(" ", "-")
        config: AgentConfig = agent(
            name=name,
            first_message="Hi {{caller.name}}, about your {{metadata.category}} request.",
            **({"analysis": ANALYSIS} if analysis else {}),
        )
        agent_id = (await platform.agents.create(org, AgentCreate(name=name, config=config))).id
    made = await platform.leads.create_business(
        org, BusinessIn.model_validate(business_body(agent_id=agent_id, **changes))
    )
    return made.id


async def submit(platform: Platform, **changes: Any) -> str:
    result = await platform.leads.submit(
        platform.default_org_id, LeadIn.model_validate(lead_body(**changes)), source="api"
    )
    return result.lead.id


async def jobs(platform: Platform) -> list[OutboundJob]:
    async with platform.db.session() as session:
        return list(await session.scalars(select(OutboundJob)))


async def outcome_emails(platform: Platform, lead_id: str) -> list[LeadNotification]:
    async with platform.db.session() as session:
        rows = await session.scalars(
            select(LeadNotification).where(
                LeadNotification.lead_id == lead_id, LeadNotification.kind == "callback_outcome"
            )
        )
        return list(rows)


def turn(call_id: str, seq: int, speaker: str, text: str, start_ms: int) -> dict[str, Any]:
    return {"call_id": call_id, "seq": seq, "speaker": speaker, "text": text, "start_ms": start_ms,
            "end_ms": start_ms + 1500, "interrupted": False, "reply_id": None}  # fmt: skip


async def answered_with_words(platform: Platform, queue: OutboundQueue, call_id: str) -> None:
    """The callee answered, said something, and the call ended; then the status webhook tells the queue."""
    await platform.calls.set_status(call_id, CallStatus.IN_PROGRESS)
    async with platform.db.session() as session:
        await CallRepository(session).save_turns(
            [
                turn(call_id, 1, "agent", "Hi Ada, this is Hudson Plumbing.", 0),
                turn(call_id, 2, "user", "Thursday at six works for me.", 2000),
            ]
        )
    await platform.calls.set_status(call_id, CallStatus.COMPLETED, reason="callee_hung_up")
    await queue.outcome(call_id, "completed", at=TUESDAY_NOON_NEW_YORK)


def analyst() -> Any:
    async def resolve(_agent: AgentConfig, _org: str) -> LanguageModel:
        return ScriptedModel(ANALYST)

    return resolve


# --- asking ---------------------------------------------------------------------------------------------


async def test_a_lead_without_consent_is_never_called_back(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    await plumber(platform)
    lead_id = await submit(platform, consent_to_call=False)
    refused = await client.post(f"/v1/leads/{lead_id}/callback", json={})
    assert refused.status_code == 409
    assert "did not agree to be called" in refused.json()["detail"]
    assert await jobs(platform) == []
    assert (await platform.leads.lead(platform.default_org_id, lead_id)).status == "matched"


async def test_a_callback_is_queued_once_with_the_lead_for_the_agents_prompt(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    business_id = await plumber(platform)
    lead_id = await submit(platform)
    made = await client.post(f"/v1/leads/{lead_id}/callback", json={"business_id": business_id})
    assert made.status_code == 202, made.text
    body = made.json()
    assert body["status"] == "callback_queued" and body["created"] is True
    assert (body["business_id"], body["requested_by"]) == (business_id, "api")

    job = (await client.get(f"/v1/outbound-jobs/{body['job_id']}")).json()
    assert job["to_number"] == "+12015550123" and job["status"] == "pending"
    assert (job["window"], job["time_zone"]) == ("09:00-20:00", "America/New_York")
    metadata = job["metadata"]
    assert metadata["lead_id"] == lead_id and metadata["business_id"] == business_id
    assert metadata["caller_name"] == "Ada Lovelace" and metadata["category"] == "plumbing"
    assert (
        metadata["description"] == "The kitchen sink leaks."
        and metadata["business_name"] == "Hudson Plumbing"
    )

    again = await client.post(f"/v1/leads/{lead_id}/callback", json={"requested_by": "lead"})
    assert again.status_code == 200
    assert again.json()["job_id"] == body["job_id"] and again.json()["created"] is False
    assert len(await jobs(platform)) == 1
    lead = (await client.get(f"/v1/leads/{lead_id}")).json()
    assert lead["status"] == "callback_queued"


async def test_a_business_without_an_agent_or_a_lead_not_sent_to_it_is_refused(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    business_id = await plumber(platform, with_agent=False)
    lead_id = await submit(platform)
    no_agent = await client.post(f"/v1/leads/{lead_id}/callback", json={"business_id": business_id})
    assert no_agent.status_code == 409 and "has no agent" in no_agent.json()["detail"]
    elsewhere = await plumber(platform, name="Far Away Plumbing", latitude=51.5, longitude=-0.12)
    not_sent = await client.post(f"/v1/leads/{lead_id}/callback", json={"business_id": elsewhere})
    assert not_sent.status_code == 404
    assert (await client.post("/v1/leads/lead_nope/callback", json={})).status_code == 404
    assert await jobs(platform) == []


async def test_an_older_lead_with_a_premium_rate_number_is_not_called_back(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    await plumber(platform)
    lead_id = await submit(platform)
    async with platform.db.session() as session:  # stored before such numbers were refused
        await session.execute(update(Lead).where(Lead.id == lead_id).values(phone="+19005550177"))
    refused = await client.post(f"/v1/leads/{lead_id}/callback", json={})
    assert refused.status_code == 409, refused.text
    assert "to is a premium-rate number" in refused.json()["detail"]
    assert await jobs(platform) == []
    assert (await platform.leads.lead(platform.default_org_id, lead_id)).status == "matched"


# --- the outcome ----------------------------------------------------------------------------------------


async def test_an_answered_callback_waits_for_its_analysis_then_the_business_is_emailed_once(
    platform: Platform, queue: OutboundQueue, dialer: FakeDialer
) -> None:
    org = platform.default_org_id
    business_id = await plumber(platform)
    lead_id = await submit(platform)
    await platform.callbacks.request(queue, org, lead_id, business_id=business_id, requested_by="api")
    assert await queue.dispatch_once(at=TUESDAY_NOON_NEW_YORK) == 1
    call_id = dialer.last_call("+12015550123")
    async with platform.db.session() as session:
        call = await CallRepository(session).get(call_id)
        assert call is not None and call.metadata_ is not None
        assert call.metadata_["caller_name"] == "Ada Lovelace", "the call carries the lead to the prompt"

    await answered_with_words(platform, queue, call_id)
    waiting = await platform.leads.lead(org, lead_id)
    assert waiting.status == "callback_queued", "the analysis is still to come"
    assert waiting.outcome is not None and waiting.outcome["analysis"] == "pending"
    assert await outcome_emails(platform, lead_id) == []

    platform.analysis.models = analyst()
    assert await platform.analysis.step()
    called = await platform.leads.lead(org, lead_id)
    outcome = called.outcome
    assert called.status == "called" and outcome is not None
    assert (outcome["result"], outcome["call_id"], outcome["job_status"]) == (
        "answered",
        call_id,
        "completed",
    )
    assert outcome["summary"] == "Ada booked a plumber for Thursday at 6 pm."
    assert outcome["structured_data"] == {"appointment": "Thursday 18:00"}
    assert outcome["transcript"][1] == {"speaker": "user", "text": "Thursday at six works for me."}
    [email] = await outcome_emails(platform, lead_id)
    assert (email.business_id, email.channel, email.recipient) == (
        business_id,
        "email",
        "desk@hudson.example.com",
    )

    await platform.analysis.rerun(org, call_id)  # an operator asks again: no second email
    assert await platform.analysis.step()
    assert len(await outcome_emails(platform, lead_id)) == 1
    assert (await platform.leads.lead(org, lead_id)).status == "called"


async def test_a_lead_never_reached_is_reported_when_the_attempts_run_out(
    platform: Platform, queue: OutboundQueue, dialer: FakeDialer
) -> None:
    org = platform.default_org_id
    business_id = await plumber(platform, analysis=False)
    lead_id = await submit(platform)
    await platform.callbacks.request(queue, org, lead_id, business_id=business_id, requested_by="cli")
    for attempt in range(2):
        at = TUESDAY_NOON_NEW_YORK.replace(minute=attempt * 5)
        assert await queue.dispatch_once(at=at) == 1
        call_id = dialer.last_call("+12015550123")
        await platform.calls.set_status(call_id, "busy")
        await queue.outcome(call_id, "busy", at=at)
        lead = await platform.leads.lead(org, lead_id)
        if attempt == 0:
            assert lead.status == "callback_queued" and lead.outcome is None, "a retry is still to come"
    assert lead.status == "callback_failed" and lead.outcome is not None
    assert (lead.outcome["result"], lead.outcome["status"], lead.outcome["attempts"]) == ("busy", "busy", 2)
    assert lead.outcome["job_status"] == "exhausted" and lead.outcome["transcript"] == []
    assert len(await outcome_emails(platform, lead_id)) == 1


async def test_a_canceled_callback_is_reported_too(platform: Platform, queue: OutboundQueue) -> None:
    org = platform.default_org_id
    await plumber(platform)
    lead_id = await submit(platform, name="Grace Hopper")
    made = await platform.callbacks.request(queue, org, lead_id, business_id=None, requested_by="api")
    await queue.cancel(org, made.job_id)
    lead = await platform.leads.lead(org, lead_id)
    assert lead.status == "callback_failed" and lead.outcome is not None
    assert lead.outcome["result"] == "canceled" and lead.outcome["job_status"] == "canceled"


def test_each_way_a_call_can_end_is_named_for_the_business() -> None:
    started = TUESDAY_NOON_NEW_YORK
    assert call_result(None) == "failed"
    assert call_result(Call(status="completed", started_at=started, answered_by="human")) == "answered"
    assert call_result(Call(status="completed", started_at=started, answered_by="machine_end_beep")) == (
        "voicemail"
    )
    assert call_result(Call(status="failed", started_at=started)) == "answered", (
        "reached, then the line failed"
    )
    assert call_result(Call(status="no_answer")) == "no_answer"
    assert call_result(Call(status="busy")) == "busy"
    assert call_result(Call(status="canceled")) == "canceled"
    assert call_result(Call(status="failed", end_reason="twilio:21211")) == "failed"


# --- signed links ---------------------------------------------------------------------------------------


def test_signed_links_are_refused_when_altered_for_something_else_or_expired(settings: Settings) -> None:
    link = callback_link(settings, "lead_1", "biz_1", now=1_000_000.0)
    assert link is not None and link.startswith(f"{PUBLIC}/leads/lead_1/callback?b=biz_1&exp=")
    query = {k: v[0] for k, v in parse_qs(urlsplit(link).query).items()}
    verify_callback(settings, "lead_1", "biz_1", query["exp"], query["sig"], now=1_000_000.0)
    for lead, business, expires, sig in (
        ("lead_2", "biz_1", query["exp"], query["sig"]),  # another lead
        ("lead_1", "biz_2", query["exp"], query["sig"]),  # another business
        ("lead_1", "biz_1", str(int(query["exp"]) + 86400), query["sig"]),  # a later expiry
        ("lead_1", "biz_1", query["exp"], query["sig"][:-1] + ("A" if query["sig"][-1] != "A" else "B")),
        ("lead_1", "biz_1", query["exp"], ""),
    ):
        with pytest.raises(LinkRefused):
            verify_callback(settings, lead, business, expires, sig, now=1_000_000.0)
    with pytest.raises(LinkExpired):
        verify_callback(settings, "lead_1", "biz_1", query["exp"], query["sig"], now=1_000_000.0 + 7 * 86400)
    token = parse_qs(urlsplit(business_path(settings, "lead_1", now=1_000_000.0)).query)["token"][0]
    with pytest.raises(LinkRefused):  # a business page token is no call-back signature, and back
        verify_callback(settings, "lead_1", "biz_1", *token.split("."), now=1_000_000.0)
    other = settings.model_copy(update={"link_secret": None, "secrets_key": None})
    with pytest.raises(LinkRefused):  # another server's secret
        verify_callback(other, "lead_1", "biz_1", query["exp"], query["sig"], now=1_000_000.0)
    assert callback_link(settings.model_copy(update={"public_url": None}), "lead_1", "biz_1") is None


# --- the pages, over HTTP -------------------------------------------------------------------------------


async def test_the_emailed_link_confirms_first_and_only_its_post_queues_the_call(
    platform: Platform, browser: httpx.AsyncClient
) -> None:
    business_id = await plumber(platform)
    lead_id = await submit(platform)
    query = callback_query(platform.settings, lead_id, business_id)
    page = await browser.get(f"/leads/{lead_id}/callback?{query}")
    assert page.status_code == 200 and "Call Ada Lovelace now" in page.text
    assert (
        page.headers["referrer-policy"] == "no-referrer"
        and "frame-ancestors 'none'" in page.headers["content-security-policy"]
    )
    assert await jobs(platform) == [], "opening the link places no call (mail scanners follow links)"

    form = {k: v[0] for k, v in parse_qs(query).items()}
    tampered = await browser.post(f"/leads/{lead_id}/callback", data=form | {"sig": "x" * 43})
    assert tampered.status_code == 403 and await jobs(platform) == []
    queued = await browser.post(f"/leads/{lead_id}/callback", data=form)
    assert queued.status_code == 200 and "Call-back queued" in queued.text
    [job] = await jobs(platform)
    assert job.metadata_["requested_by"] == "email_link"
    again = await browser.get(f"/leads/{lead_id}/callback?{query}")
    assert "asked for already" in again.text and "Call Ada Lovelace now" not in again.text


async def test_the_business_page_lists_its_leads_and_asks_for_a_call(
    platform: Platform, browser: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    business_id = await plumber(platform)
    willing = await submit(platform)
    unwilling = await submit(platform, name="Charles Babbage", consent_to_call=False)
    made = await client.post(f"/v1/businesses/{business_id}/page-link", json={"ttl_days": 3})
    assert made.status_code == 200
    url = made.json()["url"]
    assert url.startswith(f"{PUBLIC}/business/{business_id}/leads?token=")
    path = url[len(PUBLIC) :]

    page = await browser.get(path)
    assert page.status_code == 200
    assert page.text.count('class="lead"') == 2 and "No consent to call" in page.text
    assert page.text.count("Request AI call") == 1
    token = parse_qs(urlsplit(url).query)["token"][0]
    refused = await browser.post(f"/business/{business_id}/leads/{unwilling}/callback", data={"token": token})
    assert refused.status_code == 303 and "refused=" in refused.headers["location"]
    queued = await browser.post(f"/business/{business_id}/leads/{willing}/callback", data={"token": token})
    assert queued.status_code == 303
    shown = await browser.get(queued.headers["location"])
    assert "AI call-back of Ada Lovelace queued" in shown.text and "Request AI call" not in shown.text
    assert len(await jobs(platform)) == 1

    other = await plumber(platform, name="Other Plumbing")
    assert (await browser.get(f"/business/{other}/leads?token={token}")).status_code == 403
    forged = await browser.post(f"/business/{business_id}/leads/{willing}/callback", data={"token": "1.abc"})
    assert forged.status_code == 403
    with pytest.raises(LinkRefused):
        verify_business(platform.settings, other, token)
