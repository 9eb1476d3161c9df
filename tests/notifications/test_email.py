"""A lead's email, from the outbox to a real SMTP server: what the business receives, what happens while
the server is down (retried with backoff, then delivered once), and what a refusal does."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from email.message import EmailMessage

import httpx
from aiosmtpd.smtp import SMTP, Envelope, Session

from parley.notifications.mailbox import Mailbox
from parley.notifications.templates import TemplateStore
from parley.platform.runtime import Platform
from parley.store.leads import LeadRepository
from parley.store.models import Business, Lead
from tests.notifications.conftest import (
    BACKOFF_S,
    OPERATOR,
    Clock,
    business_in,
    email_worker,
    lead_in,
    notifications,
    smtp_server,
)
from tests.store.services import free_port


def bodies(message: EmailMessage) -> dict[str, str]:
    """The message's parts by content type."""
    found: dict[str, str] = {}
    for part in message.walk():
        if not part.is_multipart():
            assert isinstance(part, EmailMessage)
            found[part.get_content_type()] = str(part.get_content())
    return found


async def test_a_business_receives_its_lead_as_a_multipart_email_in_its_own_words(platform: Platform) -> None:
    org = platform.default_org_id
    templates = TemplateStore(platform.db)
    await templates.put(org, "new_lead.subject", "[Bay] {{ lead.name }} needs {{ lead.category }}")
    await templates.put(
        org,
        "new_lead.html",
        "<h1>{{ business.name }}: call {{ lead.name }}</h1>"
        "{% if callback_url %}<a href='{{ callback_url }}'>Request an AI call-back</a>{% endif %}",
    )
    business = await platform.leads.create_business(org, business_in())
    lead = await platform.leads.submit(org, lead_in(name="Ada <b>Lovelace</b>"), source="api")
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        worker = email_worker(platform, port, Clock())

        async def link(lead: Lead, business: Business) -> str:
            return f"https://parley.test/callback/{lead.id}?business={business.id}"

        worker.callback_url = link
        assert await worker.step() == 1, "the email is claimed; the text waits for a server with Twilio"
        [mail] = await mailbox.wait_for(1)

    by_channel = {n.channel: n for n in await notifications(platform, lead.lead.id)}
    email, text = by_channel["email"], by_channel["sms"]
    assert (email.channel, email.status, email.attempts) == ("email", "sent", 1)
    assert (text.channel, text.status, text.attempts) == ("sms", "pending", 0)
    assert mail.message_id == f"<{email.id}@parley>" == email.provider_id
    assert mail.rcpt_tos == [business.notify_email] == [email.recipient]
    assert mail.subject == "[Bay] Ada <b>Lovelace</b> needs plumbing", "the organization's subject"
    assert mail.message.get_content_type() == "multipart/alternative"
    parts = bodies(mail.message)
    assert set(parts) == {"text/plain", "text/html"}
    assert "<h1>Bay Plumbing Co.: call Ada &lt;b&gt;Lovelace&lt;/b&gt;</h1>" in parts["text/html"], (
        "the organization's HTML, the lead's own markup escaped"
    )
    callback = f"https://parley.test/callback/{lead.lead.id}?business={business.id}"
    assert callback in parts["text/html"]
    assert "Phone:       +14155550199" in parts["text/plain"], "the default text part"
    assert callback in parts["text/plain"]


async def test_without_a_call_back_link_the_email_says_nothing_of_one(platform: Platform) -> None:
    org = platform.default_org_id
    await platform.leads.create_business(org, business_in())
    await platform.leads.submit(org, lead_in(), source="api")
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        await email_worker(platform, port, Clock()).step()
        [mail] = await mailbox.wait_for(1)
    parts = bodies(mail.message)
    assert "Ada Lovelace" in parts["text/html"] and "Ada Lovelace" in parts["text/plain"]
    assert "AI call-back" not in parts["text/html"] and "AI assistant" not in parts["text/plain"]


async def test_the_call_backs_outcome_reaches_the_business(platform: Platform) -> None:
    org = platform.default_org_id
    business = await platform.leads.create_business(org, business_in())
    lead = await platform.leads.submit(org, lead_in(), source="api")
    async with platform.db.session() as session:  # what the call-back does once its call ended
        row = await session.get(Lead, lead.lead.id)
        assert row is not None
        row.outcome = {
            "result": "answered",
            "status": "answered",
            "duration_s": 61.0,
            "summary": "Ada wants someone on Thursday evening.",
            "transcript": [{"speaker": "user", "text": "Thursday <evening> is best."}],
        }
        await LeadRepository(session).enqueue_notifications(
            org,
            lead.lead.id,
            [
                {
                    "business_id": business.id,
                    "kind": "callback_outcome",
                    "channel": "email",
                    "recipient": "x@y.example",
                }
            ],
        )
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        assert await email_worker(platform, port, Clock()).step() == 2
        mails = await mailbox.wait_for(2)
    [outcome] = [m for m in mails if m.rcpt_tos == ["x@y.example"]]
    assert outcome.subject == "Call-back to Ada Lovelace: answered"
    parts = bodies(outcome.message)
    assert "Ada wants someone on Thursday evening." in parts["text/plain"]
    assert "user: Thursday <evening> is best." in parts["text/plain"]
    assert "Thursday &lt;evening&gt; is best." in parts["text/html"]


async def test_a_template_that_fails_for_one_lead_falls_back_to_the_default(platform: Platform) -> None:
    org = platform.default_org_id
    # fine with the sample data (which has a postal code); this lead has none
    await TemplateStore(platform.db).put(org, "new_lead.subject", "Lead in {{ lead.postal_code[0:3] }}xx")
    await platform.leads.create_business(org, business_in(postal_codes=[], latitude=37.77, longitude=-122.42,
                                                          radius_km=30))  # fmt: skip
    await platform.leads.submit(
        org, lead_in(postal_code=None, latitude=37.76, longitude=-122.41), source="api"
    )
    mailbox = Mailbox()
    async with smtp_server(mailbox) as port:
        await email_worker(platform, port, Clock()).step()
        [mail] = await mailbox.wait_for(1)
    assert mail.subject == "New lead: Ada Lovelace (plumbing)", "the default subject, not a lost email"


async def test_smtp_down_then_up_every_email_is_retried_with_backoff_and_arrives_once(
    platform: Platform,
) -> None:
    org = platform.default_org_id
    await platform.leads.create_business(org, business_in())
    leads = [await platform.leads.submit(org, lead_in(name=f"Lead {n}"), source="api") for n in range(3)]
    port = free_port()  # nothing listens there yet
    clock = Clock()
    worker = email_worker(platform, port, clock)

    assert await worker.step() == 3
    rows = [n for n in await notifications(platform) if n.channel == "email"]
    assert {(n.status, n.attempts) for n in rows} == {("pending", 1)}
    assert all("unreachable" in (n.last_error or "") for n in rows)
    assert {n.next_attempt_at for n in rows} == {clock.now + _s(BACKOFF_S)}

    assert await worker.step() == 0, "nothing is retried before its backoff"
    clock.advance(BACKOFF_S)
    assert await worker.step() == 3
    rows = [n for n in await notifications(platform) if n.channel == "email"]
    assert {(n.status, n.attempts) for n in rows} == {("pending", 2)}
    assert {n.next_attempt_at for n in rows} == {clock.now + _s(2 * BACKOFF_S)}, "the wait doubles"

    mailbox = Mailbox()
    async with smtp_server(mailbox, port):  # the server is back, on the same port
        clock.advance(2 * BACKOFF_S)
        assert await worker.step() == 3
        await mailbox.wait_for(3)
        clock.advance(3600)
        assert await worker.step() == 0, "nothing left to send"

    rows = [n for n in await notifications(platform) if n.channel == "email"]
    assert {(n.status, n.attempts, n.last_error) for n in rows} == {("sent", 3, None)}
    ids = Counter(mailbox.message_ids())
    assert set(ids) == {f"<{n.id}@parley>" for n in rows} and set(ids.values()) == {1}, "each once"
    assert {m.subject for m in mailbox.received} == {
        f"New lead: {lead.lead.name} (plumbing)" for lead in leads
    }


class Refusing(Mailbox):
    """An SMTP server that refuses some recipients: for good (550) or for now (451)."""

    def __init__(self, refusals: dict[str, str]) -> None:
        super().__init__()
        self.refusals = refusals

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        refusal = self.refusals.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"


async def test_a_refused_recipient_fails_at_once_and_a_deferred_one_is_retried(platform: Platform) -> None:
    org = platform.default_org_id
    await platform.leads.create_business(org, business_in(notify_email="gone@bay.example.com"))
    await platform.leads.create_business(
        org, business_in(name="Busy Plumbing", notify_email="busy@bay.example.com")
    )
    await platform.leads.submit(org, lead_in(), source="api")
    await platform.leads.submit(org, lead_in(category="roofing"), source="api")  # unmatched: to the operator
    mailbox = Refusing(
        {"gone@bay.example.com": "550 5.1.1 No such user", "busy@bay.example.com": "451 4.3.0 Later"}
    )
    async with smtp_server(mailbox) as port:
        assert await email_worker(platform, port, Clock()).step() == 3
        await mailbox.wait_for(1)

    by_recipient = {n.recipient: n for n in await notifications(platform) if n.channel == "email"}
    gone, busy, operator = (
        by_recipient[a] for a in ("gone@bay.example.com", "busy@bay.example.com", OPERATOR)
    )
    assert gone.status == "failed" and "550" in (gone.last_error or ""), "a permanent refusal is final"
    assert busy.status == "pending" and "451" in (busy.last_error or ""), "a temporary one is retried"
    assert operator.status == "sent" and operator.kind == "unmatched_lead"
    assert mailbox.received[0].subject == "Unmatched lead: Ada Lovelace (roofing)"


async def test_the_last_attempt_fails_for_good_and_a_retry_sends_it_again(
    platform: Platform, client: httpx.AsyncClient
) -> None:
    org = platform.default_org_id
    await platform.leads.create_business(org, business_in())
    await platform.leads.submit(org, lead_in(), source="api")
    port = free_port()
    clock = Clock()
    worker = email_worker(platform, port, clock)
    for _ in range(platform.settings.notification_max_attempts):
        assert await worker.step() == 1
        clock.advance(3600)
    [email] = [n for n in await notifications(platform) if n.channel == "email"]
    assert (email.status, email.attempts) == ("failed", platform.settings.notification_max_attempts)
    assert await worker.step() == 0

    assert (await client.post("/v1/lead-notifications/ntf_0000/retry")).status_code == 404
    retried = await client.post(f"/v1/lead-notifications/{email.id}/retry")
    assert retried.status_code == 200, retried.text
    assert (retried.json()["status"], retried.json()["attempts"]) == ("pending", 0)
    assert retried.json()["lead_id"] == email.lead_id and retried.json()["call_id"] is None
    mailbox = Mailbox()
    async with smtp_server(mailbox, port):
        assert await worker.step() == 1
        await mailbox.wait_for(1)
    [email] = [n for n in await notifications(platform) if n.channel == "email"]
    assert (email.status, email.attempts) == ("sent", 1)


def _s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)
