"""Texts and emails an agent sends during a call (``send_sms``/``send_email``) go through the notification
outbox: a row written for the call, delivered by the same worker as lead notifications to a real SMTP
server and the local Twilio, and, on a whole phone call, moved to ``delivered`` by Twilio's callbacks. The
call's detail (``GET /v1/calls/{id}``, ``parley calls show``) lists them with how far each got, and a
failed one is sent again by the retry route. A server without the channel says so in a sentence, and
writes nothing."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from parley.commands.calls import calls_app
from parley.config import Settings, get_settings
from parley.engine.agent import AgentConfig
from parley.engine.tools import CallContext, ToolOutcome, ToolRegistry
from parley.notifications.email import EmailSender
from parley.notifications.mailbox import Mailbox
from parley.notifications.sms import SmsSender, sender_number
from parley.notifications.worker import NotificationWorker
from parley.platform.messages import CallOutbox
from parley.platform.runtime import Platform
from parley.providers.llm.base import ToolCall
from parley.providers.llm.scripted import ScriptRule
from parley.stack import build_tools
from parley.store.models import LeadNotification, PhoneNumber
from parley.store.notifications import NotificationRepository
from parley.telephony.rest import TwilioRest
from parley.twilio_sim.resources import SimMessage
from parley.twilio_sim.server import TwilioSim, serving
from tests.engine.harness import agent, speech
from tests.notifications.conftest import Clock, email_worker, smtp_config, smtp_server, until
from tests.notifications.test_email import Refusing, bodies
from tests.phone.conftest import PARLEY_NUMBER, PERSON, call_id_of, heard_reply, phone_lab

OFFICE = "office@bayplumbing.example.com"
TOOLS = [
    {"name": "send_sms"},
    {"name": "send_email", "recipients": {"office": OFFICE}},
]


async def a_call(platform: Platform) -> str:
    call, _ = await platform.calls.create(
        platform.default_org_id,
        direction="inbound",
        transport="twilio",
        from_number=PERSON,
        to_number=PARLEY_NUMBER,
    )
    return call.id


def tools_for(
    platform: Platform, settings: Settings, call_id: str, woken: list[str] | None = None
) -> ToolRegistry:
    def wake() -> None:
        if woken is not None:
            woken.append("wake")

    outbox = CallOutbox(
        platform.db, settings, org_id=platform.default_org_id, call_id=call_id, wake=lambda: wake
    )
    context = CallContext(
        call_id=call_id, caller_number=PERSON, metadata={"email": "ada@example.org"}, messages=outbox
    )
    return build_tools(AgentConfig.model_validate({"tools": TOOLS}), context=context)


async def use(tools: ToolRegistry, name: str, **arguments: str) -> ToolOutcome:
    return await tools.execute(ToolCall("c1", name, dict(arguments)))


async def messages_of(platform: Platform, call_id: str) -> list[LeadNotification]:
    async with platform.db.session() as session:
        return await NotificationRepository(session).for_call(call_id)


async def test_an_agents_emails_are_queued_for_the_call_and_delivered_as_written(platform: Platform) -> None:
    call_id = await a_call(platform)
    mailbox = Mailbox()
    woken: list[str] = []
    async with smtp_server(mailbox) as port:
        settings = platform.settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False}
        )
        tools = tools_for(platform, settings, call_id, woken)
        to_office = await use(
            tools,
            "send_email",
            to="office",
            subject="Call-back wanted",
            body="Ada <b>asks</b>\n\nfor a call.",
        )
        to_caller = await use(tools, "send_email", to="caller", subject="Your quote", body="Two hours, $180.")
        assert to_office.ok and to_caller.ok and to_caller.content == '{"queued": true, "to": "caller"}'
        assert woken == ["wake", "wake"], "the worker is told at once"
        queued = await messages_of(platform, call_id)
        assert [(m.source, m.kind, m.channel, m.status, m.lead_id) for m in queued] == [
            ("tool", "call_message", "email", "pending", None)
        ] * 2

        worker = email_worker(platform, port, Clock())
        assert await worker.step() == 2
        mails = await mailbox.wait_for(2)

    sent = await messages_of(platform, call_id)
    assert [(m.recipient, m.status, m.attempts) for m in sent] == [
        (OFFICE, "sent", 1),
        ("ada@example.org", "sent", 1),
    ]
    by_to = {mail.rcpt_tos[0]: mail for mail in mails}
    office = by_to[OFFICE]
    assert office.message_id == sent[0].provider_id == f"<{sent[0].id}@parley>"
    assert office.subject == "Call-back wanted"
    parts = bodies(office.message)
    assert parts["text/plain"].replace("\r\n", "\n").strip() == "Ada <b>asks</b>\n\nfor a call."
    assert "<p>Ada &lt;b&gt;asks&lt;/b&gt;</p><p>for a call.</p>" in parts["text/html"], (
        "the model's markup is text"
    )
    assert by_to["ada@example.org"].subject == "Your quote"


HARBOR_ST = "Bay Plumbing: 12 Harbor St."


async def text_through_twilio(platform: Platform, call_id: str, **settings: object) -> SimMessage:
    """The agent of ``call_id`` texts the caller; the worker sends it to the local Twilio once."""
    async with serving(TwilioSim()) as sim:
        assert sim.base_url is not None
        twilio = platform.settings.model_copy(
            update={
                "twilio_account_sid": sim.account_sid,
                "twilio_auth_token": SecretStr(sim.auth_token),
                "twilio_api_base_url": sim.base_url,
                **settings,
            }
        )
        tools = tools_for(platform, twilio, call_id)
        assert (await use(tools, "send_sms", to="caller", body=HARBOR_ST)).ok
        rest = TwilioRest.from_settings(twilio)
        assert rest is not None
        worker = NotificationWorker(
            platform.db, twilio, email=None, sms=SmsSender(rest, platform.db, twilio), clock=Clock()
        )
        assert await worker.step() == 1
    [text] = sim.messages.values()
    return text


async def test_an_agents_text_goes_to_twilio_from_the_organizations_number(platform: Platform) -> None:
    call_id = await a_call(platform)
    text = await text_through_twilio(platform, call_id, sms_from=PARLEY_NUMBER)
    assert (text.to, text.from_, text.body) == (PERSON, PARLEY_NUMBER, HARBOR_ST)
    [row] = await messages_of(platform, call_id)
    assert (row.channel, row.recipient, row.status, row.provider_id) == ("sms", PERSON, "sent", text.sid)


OTHER_NUMBER = "+14155550199"
"""Another of the organization's numbers, added before the one the test calls use."""


async def own_numbers(platform: Platform, *numbers: str) -> None:
    async with platform.db.session() as session:
        for index, number in enumerate(numbers):
            created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=index)
            session.add(
                PhoneNumber(
                    id=f"num_{index}", org_id=platform.default_org_id, number=number, created_at=created
                )
            )


async def test_a_calls_text_comes_from_the_line_of_that_call(platform: Platform) -> None:
    await own_numbers(platform, OTHER_NUMBER, PARLEY_NUMBER)
    org, settings = platform.default_org_id, platform.settings
    inbound = await a_call(platform)  # the caller dialled PARLEY_NUMBER
    outbound, _ = await platform.calls.create(
        org, direction="outbound", transport="twilio", from_number=PARLEY_NUMBER, to_number=PERSON
    )
    web, _ = await platform.calls.create(org, direction="web", transport="websocket")
    assert await sender_number(platform.db, settings, org, inbound) == PARLEY_NUMBER
    assert await sender_number(platform.db, settings, org, outbound.id) == PARLEY_NUMBER
    assert await sender_number(platform.db, settings, org, web.id) == OTHER_NUMBER, "no line: the first"
    assert await sender_number(platform.db, settings, org) == OTHER_NUMBER
    chosen = settings.model_copy(update={"sms_from": "+14155550142"})
    assert await sender_number(platform.db, chosen, org, inbound) == "+14155550142", "the operator's choice"

    text = await text_through_twilio(platform, inbound)  # no PARLEY_SMS_FROM: the call's line
    assert (text.to, text.from_) == (PERSON, PARLEY_NUMBER)


async def test_the_call_shows_its_text_and_email_and_a_refused_email_is_sent_again_by_retry(
    platform: Platform,
    client: httpx.AsyncClient,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call_id = await a_call(platform)
    mailbox = Refusing({OFFICE: "550 5.1.1 No such user"})
    async with serving(TwilioSim()) as sim, smtp_server(mailbox) as port:
        assert sim.base_url is not None
        settings = platform.settings.model_copy(
            update={
                "twilio_account_sid": sim.account_sid,
                "twilio_auth_token": SecretStr(sim.auth_token),
                "twilio_api_base_url": sim.base_url,
                "sms_from": PARLEY_NUMBER,
                "smtp_host": "127.0.0.1",
                "smtp_port": port,
                "smtp_starttls": False,
            }
        )
        tools = tools_for(platform, settings, call_id)
        assert (await use(tools, "send_sms", to="caller", body="Bay Plumbing: 12 Harbor St.")).ok
        assert (await use(tools, "send_email", to="office", subject="Call-back", body="Ada asks.")).ok
        rest = TwilioRest.from_settings(settings)
        assert rest is not None
        worker = NotificationWorker(
            platform.db,
            settings,
            email=EmailSender(smtp_config(port)),
            sms=SmsSender(rest, platform.db, settings),
            clock=Clock(),
        )
        assert await worker.step() == 2

        shown = (await client.get(f"/v1/calls/{call_id}")).json()["messages"]
        text, email = shown
        assert set(text) == {
            "id",
            "channel",
            "to",
            "subject",
            "body",
            "status",
            "attempts",
            "created_at",
            "sent_at",
            "delivered_at",
            "error",
        }, "no provider ids, no lease: what was sent, to whom, and how far it got"
        assert (text["channel"], text["to"], text["subject"], text["body"]) == (
            "sms",
            PERSON,
            None,
            "Bay Plumbing: 12 Harbor St.",
        )
        assert (text["status"], text["attempts"], text["error"]) == ("sent", 1, None) and text["sent_at"]
        assert (email["channel"], email["to"], email["subject"], email["body"]) == (
            "email",
            OFFICE,
            "Call-back",
            "Ada asks.",
        )
        assert (email["status"], email["sent_at"]) == ("failed", None) and "550" in email["error"]

        mailbox.refusals.clear()  # the office's mailbox is back
        retried = await client.post(f"/v1/lead-notifications/{email['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert (retried.json()["status"], retried.json()["kind"]) == ("pending", "call_message")
        assert (retried.json()["call_id"], retried.json()["lead_id"]) == (call_id, None)
        assert await worker.step() == 1
        await mailbox.wait_for(1)

    detail = (await client.get(f"/v1/calls/{call_id}")).json()
    assert [(m["channel"], m["status"], m["attempts"], m["error"]) for m in detail["messages"]] == [
        ("sms", "sent", 1, None),
        ("email", "sent", 1, None),
    ]

    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        human = await asyncio.to_thread(runner.invoke, calls_app, ["show", call_id])
        as_json = await asyncio.to_thread(runner.invoke, calls_app, ["show", call_id, "--json"])
    finally:
        get_settings.cache_clear()
    assert human.exit_code == 0, human.output
    assert "messages: 2" in human.stdout
    assert (
        f"sms to {PERSON}: sent, 1 attempt" in human.stdout and "Bay Plumbing: 12 Harbor St." in human.stdout
    )
    assert f"email to {OFFICE}: sent, 1 attempt" in human.stdout and "Call-back: Ada asks." in human.stdout
    assert json.loads(as_json.stdout)["messages"] == detail["messages"]


async def test_a_call_without_messages_shows_none(
    platform: Platform,
    client: httpx.AsyncClient,
    db_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    call_id = await a_call(platform)
    assert (await client.get(f"/v1/calls/{call_id}")).json()["messages"] == []
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    get_settings.cache_clear()
    try:
        human = await asyncio.to_thread(CliRunner().invoke, calls_app, ["show", call_id])
    finally:
        get_settings.cache_clear()
    assert human.exit_code == 0, human.output
    assert "messages" not in human.stdout


async def test_without_a_channel_the_agent_is_told_so_and_nothing_is_queued(platform: Platform) -> None:
    call_id = await a_call(platform)
    bare = tools_for(platform, platform.settings, call_id)  # no SMTP host, no Twilio
    said = await use(bare, "send_sms", to="caller", body="hi")
    assert not said.ok and "I can't send text messages on this line" in said.content
    assert "tell the caller" in said.content
    mailed = await use(bare, "send_email", to="office", subject="hi", body="hi")
    assert not mailed.ok and "I can't send emails on this line" in mailed.content

    twilio = {"twilio_account_sid": "AC" + "0" * 32, "twilio_auth_token": SecretStr("t" * 32)}
    numberless = tools_for(platform, platform.settings.model_copy(update=twilio), call_id)
    said = await use(numberless, "send_sms", to="caller", body="hi")
    assert not said.ok and "no number to text from" in said.content, (
        "no PARLEY_SMS_FROM, no number of the org"
    )
    assert await messages_of(platform, call_id) == []


async def test_a_bad_recipient_is_a_422_naming_the_field_when_the_agent_is_saved(
    client: httpx.AsyncClient,
) -> None:
    config: dict[str, Any] = {"tools": [{"name": "send_sms", "recipients": {"office": "555-0123"}}]}
    made = await client.post("/v1/agents", json={"name": "texter", "config": config})
    assert made.status_code == 422, made.text
    [error] = made.json()["detail"]
    assert error["loc"] == ["body", "config", "tools", 0, "recipients", "office"] and "E.164" in error["msg"]


def rules(sms_body: str) -> Sequence[ScriptRule]:
    """The caller asks; the model texts them, then emails the office, then says it did."""
    return [
        ScriptRule(
            "address",
            reply="Sure, I'm texting it to you.",
            tool="send_sms",
            arguments={"to": "caller", "body": sms_body},
        ),
        ScriptRule(
            re.compile(r'"to": "caller"'),
            tool="send_email",
            arguments={"to": "office", "subject": "Address sent", "body": "The caller got our address."},
            on_tool_result=True,
        ),
        ScriptRule.after_tool('"to": "office"', "Done, and I told the office."),
    ]


async def test_on_a_phone_call_the_caller_gets_the_text_and_the_office_the_email(tmp_path: Path) -> None:
    body = "Bay Plumbing, 12 Harbor St, San Francisco."
    mailbox = Mailbox()
    async with (
        smtp_server(mailbox) as port,
        phone_lab(
            tmp_path,
            lines=["What is your address?"],
            rules=rules(body),
            smtp_host="127.0.0.1",
            smtp_port=port,
            smtp_starttls=False,
            notification_poll_s=60.0,  # only the wake after the message's commit starts the worker in time
        ) as lab,
    ):
        await lab.add_agent(agent(name="front-desk", first_message="Hello.", tools=TOOLS))
        call = lab.dial_in()
        caller = await call.wait_connected()
        await caller.say(speech(1.0).pcm, 16000)
        [mail] = await mailbox.wait_for(1, timeout_s=20)
        platform = lab.runtime.platform
        assert platform is not None
        call_id = call_id_of(call)

        async def delivered() -> bool:
            return [m.status for m in await messages_of(platform, call_id)] == ["delivered", "sent"]

        await until(delivered)
        await heard_reply(caller, mail.received_at)  # "Done, …", said once both tools answered
        call.request_stop("callee")
        assert await call.wait_ended() == "completed"
        record = await lab.call_record(call_id)

    [text] = lab.twilio.messages.values()
    assert (text.to, text.from_, text.body, text.status) == (PERSON, PARLEY_NUMBER, body, "delivered")
    assert mail.rcpt_tos == [OFFICE] and mail.subject == "Address sent"
    calls = [
        (e["data"]["tool"], e["data"]["arguments"]["to"])
        for e in record["events"]
        if e["type"] == "tool.call"
    ]
    assert calls == [("send_sms", "caller"), ("send_email", "office")]
    assert [(m["channel"], m["to"], m["status"]) for m in record["messages"]] == [
        ("sms", PERSON, "delivered"),
        ("email", OFFICE, "sent"),
    ], "the call's detail shows both, as far as each got"
    assert record["messages"][0]["delivered_at"] is not None
    said = [t["text"] for t in record["transcript"] if t["speaker"] == "agent"]
    assert said[-1] == "Sure, I'm texting it to you. Done, and I told the office.", "one reply, heard whole"
