"""Acceptance: a lead, end to end, against real servers on this machine.

Parley runs whole (store, REST API, pages, outbound queue, notification worker) with the tiny
deterministic engines; the local Twilio places its calls and carries its texts; an aiosmtpd server
receives its emails. A visitor submits a lead on the public endpoint; the business gets the email (with
its signed call-back link) and the text; the business opens the link and confirms; the agent calls the
lead, who answers and agrees to a time; the call ends, its analysis runs (scripted model); the lead
carries the outcome and the business gets the outcome email with the summary. A lead who did not agree
to be called is refused a call-back, and no call is queued for them.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from parley.engine.agent import AgentConfig
from parley.notifications.mailbox import Mailbox, ReceivedMail
from parley.providers.llm.base import LanguageModel
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from tests.engine.harness import agent
from tests.notifications.conftest import smtp_server
from tests.phone.conftest import PARLEY_NUMBER, PERSON, phone_lab, until

BUSINESS_EMAIL = "desk@hudson.example.com"
BUSINESS_PHONE = "+12125550100"
GREETING = "Hi {{caller.name}}, this is Hudson Plumbing about your {{metadata.category}} request."
AGREED = "Thursday at six works for me."
ANALYSIS = {
    "summary": True,
    "structured_data_schema": {
        "type": "object",
        "properties": {"appointment": {"type": "string"}},
        "required": ["appointment"],
    },
}
SUMMARY = "Ada agreed to a plumber visit on Thursday at 6 pm."
ANALYST = [
    ScriptRule.say("Summarize", SUMMARY),
    ScriptRule.say("JSON schema", '{"appointment": "Thursday 18:00"}'),
]
LINK = re.compile(r"https?://[^\s\"'<>]+/leads/lead_[0-9a-f]+/callback\?[^\s\"'<>]+")


def text_of(mail: ReceivedMail) -> str:
    part = mail.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


async def test_a_lead_is_notified_called_back_analysed_and_reported(tmp_path: Path) -> None:
    mailbox = Mailbox()
    rules = [
        ScriptRule("six", reply="Great, Thursday at six it is. Goodbye!", tool="end_call"),
        ScriptRule.after_tool("ended", ""),
    ]
    async with (
        smtp_server(mailbox) as smtp_port,
        phone_lab(
            tmp_path,
            lines=[AGREED],
            rules=rules,
            smtp_host="127.0.0.1",
            smtp_port=smtp_port,
            smtp_starttls=False,
            smtp_from="Leads <leads@parley.test>",
            link_secret="e2e-link-secret-0123456789",
            notification_poll_s=0.2,
        ) as lab,
    ):
        platform = lab.runtime.platform
        assert platform is not None

        async def analyst(_agent: AgentConfig, _org: str) -> LanguageModel:
            return ScriptedModel(ANALYST)

        platform.analysis.models = analyst
        config = agent(name="hudson-callbacks", first_message=GREETING, analysis=ANALYSIS)
        agent_id = await lab.add_agent(config, number=PARLEY_NUMBER)
        business = await lab.api.post(
            "/v1/businesses",
            json={
                "name": "Hudson Plumbing",
                "category": "plumbing",
                "latitude": 38.9072,
                "longitude": -77.0369,
                "radius_km": 30,
                "hours": {},
                "time_zone": "America/New_York",
                "notify_email": BUSINESS_EMAIL,
                "notify_phone": BUSINESS_PHONE,
                "agent_id": agent_id,
            },
        )
        assert business.status_code == 201, business.text
        business_id = business.json()["id"]
        lab.twilio.script(PERSON, say=["tone:300:0.8"], reply_gap_s=0.3)

        async with httpx.AsyncClient(base_url=lab.base, timeout=10.0) as visitor:
            lead = {
                "name": "Ada Lovelace",
                "phone": PERSON,
                "category": "plumbing",
                "latitude": 38.8951,
                "longitude": -77.0364,
                "description": "The kitchen sink leaks.",
            }
            unwilling = await visitor.post("/v1/public/leads/default", json=lead | {"name": "Charles"})
            submitted = await visitor.post("/v1/public/leads/default", json=lead | {"consent_to_call": True})
        assert unwilling.status_code == 201 and submitted.status_code == 201, submitted.text
        lead_id = submitted.json()["id"]

        # The business is told: an email with the call-back link, and a text.
        mails = await mailbox.wait_for(2, timeout_s=15)
        by_subject = {mail.subject: mail for mail in mails}
        assert set(by_subject) == {"New lead: Ada Lovelace (plumbing)", "New lead: Charles (plumbing)"}
        new_lead = by_subject["New lead: Ada Lovelace (plumbing)"]
        assert new_lead.rcpt_tos == [BUSINESS_EMAIL]
        charles_mail = text_of(by_subject["New lead: Charles (plumbing)"])
        assert "callback" not in charles_mail, "no call-back link for a lead who did not consent"
        [link] = LINK.findall(text_of(new_lead))
        html = new_lead.message.get_body(preferencelist=("html",))
        assert html is not None and link.replace("&", "&amp;") in str(html.get_content())
        await until(lambda: len(lab.twilio.messages) == 2, limit_s=10)
        texts = [m for m in lab.twilio.messages.values() if "Ada Lovelace" in m.body]
        assert [(m.to, m.from_) for m in texts] == [(BUSINESS_PHONE, PARLEY_NUMBER)]

        # The lead who did not consent: refused, and nothing is queued.
        listed = (await lab.api.get("/v1/leads", params={"business_id": business_id})).json()["data"]
        charles_id = next(row["id"] for row in listed if row["name"] == "Charles")
        refused = await lab.api.post(f"/v1/leads/{charles_id}/callback", json={"business_id": business_id})
        assert refused.status_code == 409 and "did not agree to be called" in refused.json()["detail"]
        assert (await lab.api.get("/v1/outbound-jobs")).json()["data"] == []

        # The business follows the link: a confirmation first, the call only once it confirms.
        path = link[link.index("/leads/") :]
        async with httpx.AsyncClient(base_url=lab.base, timeout=10.0) as business_browser:
            confirm = await business_browser.get(path)
            assert confirm.status_code == 200 and "Call Ada Lovelace now" in confirm.text
            assert lab.twilio.calls_to(PERSON) == []
            form = {k: v[0] for k, v in parse_qs(urlsplit(unescape(link)).query).items()}
            queued = await business_browser.post(f"/leads/{lead_id}/callback", data=form)
        assert queued.status_code == 200 and "Call-back queued" in queued.text

        # The agent calls; the lead answers, agrees, the agent says goodbye and hangs up.
        await until(lambda: len(lab.twilio.calls_to(PERSON)) == 1, limit_s=10)
        [call] = lab.twilio.calls_to(PERSON)
        assert call.from_ == PARLEY_NUMBER
        assert await call.wait_ended() == "completed"

        # The analysis runs, the lead carries the outcome, and the business gets the outcome email.
        mails = await mailbox.wait_for(3, timeout_s=20)
        outcome_mail = mails[2]
        assert outcome_mail.subject == "Call-back to Ada Lovelace: answered"
        assert outcome_mail.rcpt_tos == [BUSINESS_EMAIL] and SUMMARY in text_of(outcome_mail)
        called = (await lab.api.get(f"/v1/leads/{lead_id}")).json()
        outcome = called["outcome"]
        assert called["status"] == "called"
        assert (outcome["result"], outcome["summary"]) == ("answered", SUMMARY)
        assert outcome["structured_data"] == {"appointment": "Thursday 18:00"}
        said = [(line["speaker"], line["text"]) for line in outcome["transcript"]]
        assert said == [
            ("agent", "Hi Ada Lovelace, this is Hudson Plumbing about your plumbing request."),
            ("user", AGREED),
            ("agent", "Great, Thursday at six it is. Goodbye!"),
        ]
        record = (await lab.api.get(f"/v1/calls/{outcome['call_id']}")).json()
        assert record["provider_call_id"] == call.sid and record["direction"] == "outbound"
        assert len(mailbox.received) == 3, "each message once"
