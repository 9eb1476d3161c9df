"""The built-ins ``send_sms`` and ``send_email``: who may receive is the agent's configuration (checked when
it is saved), the model only names a recipient and writes the words, within bounds and a per-call
allowance; every refusal is a sentence the model can say, and nothing is sent then."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfig
from parley.engine.messages import MessagesUnavailable
from parley.engine.tools import CallContext, ToolOutcome, ToolRegistry
from parley.providers.llm.base import ToolCall
from parley.stack import build_tools

OFFICE_PHONE = "+14155550123"
OFFICE_EMAIL = "desk@example.com"
CALLER_PHONE = "+12025550123"


@dataclass
class Outbox:
    """A ``CallMessages`` that keeps what it was asked to send (or refuses all, like a line without
    channels)."""

    refuse: bool = False
    texts: list[tuple[str, str]] = field(default_factory=list)
    emails: list[tuple[str, str, str]] = field(default_factory=list)

    async def send_sms(self, to: str, body: str) -> str:
        if self.refuse:
            raise MessagesUnavailable("I can't send text messages on this line")
        self.texts.append((to, body))
        return f"ntf_{len(self.texts)}"

    async def send_email(self, to: str, subject: str, body: str) -> str:
        if self.refuse:
            raise MessagesUnavailable("I can't send emails on this line")
        self.emails.append((to, subject, body))
        return f"ntf_{len(self.emails)}"


def agent(**sms: Any) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "tools": [
                {"name": "send_sms", "recipients": {"office": "+1 (415) 555-0123"}} | sms,
                {"name": "send_email", "recipients": {"office": "Desk@Example.com"}},
            ]
        }
    )


def tools_for(
    outbox: Outbox | None = None,
    *,
    caller: str | None = CALLER_PHONE,
    config: AgentConfig | None = None,
    **meta: Any,
) -> ToolRegistry:
    context = CallContext(call_id="call_1", caller_number=caller, metadata=dict(meta))
    if outbox is not None:
        context.messages = outbox
    return build_tools(config or agent(), context=context)


async def text(tools: ToolRegistry, to: str, body: str) -> ToolOutcome:
    return await tools.execute(ToolCall("t", "send_sms", {"to": to, "body": body}))


async def email(tools: ToolRegistry, to: str, subject: str, body: str) -> ToolOutcome:
    return await tools.execute(ToolCall("e", "send_email", {"to": to, "subject": subject, "body": body}))


def failure(outcome: ToolOutcome) -> str:
    assert not outcome.ok, outcome.content
    return outcome.content


# --- what an agent may configure ---------------------------------------------------------------------------


def test_recipients_are_normalized_when_the_agent_is_saved() -> None:
    sms, mail = agent().tools
    assert sms.recipients == {"office": OFFICE_PHONE} and sms.max_per_call == 3 and sms.to_caller
    assert mail.recipients == {"office": "Desk@example.com"}
    assert AgentConfig.model_validate(agent().model_dump(mode="json")) == agent(), "a stored agent loads back"


@pytest.mark.parametrize(
    ("tool", "where", "why"),
    [
        (
            {"name": "send_sms", "recipients": {"office": "415-555-0123"}},
            "tools.0.recipients.office",
            "E.164",
        ),
        (
            {"name": "send_sms", "recipients": {"office": "+1555"}},
            "tools.0.recipients.office",
            "phone number",
        ),
        ({"name": "send_email", "recipients": {"boss": "boss@"}}, "tools.0.recipients.boss", "email"),
        ({"name": "send_sms", "recipients": {"boss": "boss@example.com"}}, "tools.0", "recipients.boss"),
        ({"name": "send_email", "recipients": {"boss": OFFICE_PHONE}}, "tools.0", "recipients.boss"),
        ({"name": "send_sms", "recipients": {"Caller": OFFICE_PHONE}}, "tools.0", "reserved"),
        ({"name": "send_email", "to_caller": False}, "tools.0", "at least one"),
        ({"name": "send_sms", "max_per_call": 11}, "tools.0.max_per_call", "10"),
        (
            {"name": "transfer_call", "destinations": {"a": OFFICE_PHONE}, "recipients": {"a": OFFICE_PHONE}},
            "tools.0",
            "only for the built-ins send_sms and send_email",
        ),
    ],
)
def test_a_bad_recipient_is_refused_naming_the_field(tool: dict[str, Any], where: str, why: str) -> None:
    with pytest.raises(ValidationError) as raised:
        AgentConfig.model_validate({"tools": [tool]})
    [error] = raised.value.errors()
    assert ".".join(str(part) for part in error["loc"]) == where
    assert why in error["msg"]


# --- who the model may send to ---------------------------------------------------------------------------


async def test_the_model_picks_a_recipient_by_name_and_the_message_is_queued() -> None:
    outbox = Outbox()
    tools = tools_for(outbox, email="ada@example.org")
    for name in ("send_sms", "send_email"):
        tool = tools.get(name)
        assert tool is not None and tool.side_effect and not tool.filler
    specs = {spec.name: spec.parameters for spec in tools.specs()}
    assert specs["send_sms"]["properties"]["to"]["enum"] == ["caller", "office"]
    assert specs["send_email"]["required"] == ["to", "subject", "body"]

    sent = await text(tools, "office", "  Ada called back:\r\nplease ring her.\x00 ")
    assert sent.ok and sent.content == '{"queued": true, "to": "office"}'
    assert (await text(tools, "caller", "Parley HQ, 1 Main St.")).ok
    mailed = await email(tools, "caller", "Your\nquote", "Two hours, $180.")
    assert mailed.ok and mailed.content == '{"queued": true, "to": "caller"}'
    assert outbox.texts == [
        (OFFICE_PHONE, "Ada called back:\nplease ring her."),
        (CALLER_PHONE, "Parley HQ, 1 Main St."),
    ]
    assert outbox.emails == [("ada@example.org", "Your quote", "Two hours, $180.")]


async def test_an_address_the_model_makes_up_is_never_used() -> None:
    outbox = Outbox()
    tools = tools_for(outbox)
    for made_up in ("+19005550100", "OFFICE", "attacker@example.com"):
        assert "invalid arguments" in failure(await text(tools, made_up, "hi"))
        assert "invalid arguments" in failure(await email(tools, made_up, "hi", "hi"))
    tool = tools.get("send_sms")
    assert tool is not None
    with pytest.raises(RuntimeError, match="not someone this agent may text"):  # past the schema, too
        await tool.handler({"to": "+19005550100", "body": "hi"})
    no_caller = tools_for(outbox, config=agent(to_caller=False))
    [spec] = [s for s in no_caller.specs() if s.name == "send_sms"]
    assert spec.parameters["properties"]["to"]["enum"] == ["office"]
    assert "invalid arguments" in failure(await text(no_caller, "caller", "hi"))
    assert outbox.texts == [] and outbox.emails == []


async def test_a_caller_without_a_number_or_an_address_gets_a_sentence_not_a_message() -> None:
    outbox = Outbox()
    browser = tools_for(outbox, caller=None)  # a browser call, started without metadata.email
    assert "no phone number for the caller" in failure(await text(browser, "caller", "hi"))
    assert "no email address for the caller" in failure(await email(browser, "caller", "hi", "hi"))
    hidden = tools_for(outbox, caller="anonymous", email="not an address")
    assert "cannot get texts" in failure(await text(hidden, "caller", "hi"))
    assert "not valid" in failure(await email(hidden, "caller", "hi", "hi"))
    assert outbox.texts == [] and outbox.emails == []


async def test_a_caller_id_on_a_premium_rate_number_is_never_texted() -> None:
    """Caller ids can be spoofed: a text to a +1 900 number pays its holder at the tenant's expense."""
    outbox = Outbox()
    premium = tools_for(outbox, caller="+19005550123")
    assert "cannot get texts" in failure(await text(premium, "caller", "Your booking is confirmed."))
    assert outbox.texts == []


# --- bounds, allowance, channels ---------------------------------------------------------------------------


async def test_words_over_the_bounds_are_sent_back_to_be_shortened() -> None:
    outbox = Outbox()
    tools = tools_for(outbox)
    said = failure(await text(tools, "office", "x" * 481))
    assert "481 characters" in said and "at most 480" in said and "shorten it" in said
    assert "at most 4000" in failure(await email(tools, "office", "Quote", "x" * 4001))
    assert "at most 120" in failure(await email(tools, "office", "s" * 121, "Quote"))
    assert "empty" in failure(await text(tools, "office", " \x00 "))
    assert (await text(tools, "office", "x" * 480)).ok, "the bound itself is allowed"
    assert len(outbox.texts) == 1 and outbox.emails == []


async def test_a_call_sends_at_most_max_per_call_messages_per_tool() -> None:
    outbox = Outbox()
    tools = tools_for(outbox, config=agent(max_per_call=2))
    assert (await text(tools, "office", "one")).ok
    assert (await text(tools, "caller", "two")).ok
    said = failure(await text(tools, "office", "three"))
    assert "already sent 2 texts" in said and "tell the caller" in said
    assert (await email(tools, "office", "Still", "emails have their own allowance")).ok
    assert [body for _, body in outbox.texts] == ["one", "two"]


async def test_no_channel_is_a_sentence_the_model_can_say_and_costs_no_allowance() -> None:
    refusing = Outbox(refuse=True)
    tools = tools_for(refusing, config=agent(max_per_call=1))
    said = failure(await text(tools, "office", "hi"))
    assert "I can't send text messages on this line" in said and "tell the caller" in said
    assert "I can't send emails on this line" in failure(await email(tools, "office", "hi", "hi"))
    refusing.refuse = False  # the refusal used none of the call's one text
    assert (await text(tools, "office", "hi")).ok

    alone = tools_for(None)  # a call with no outbox at all (a simulation, a call off the books)
    assert "can't send text messages on this call" in failure(await text(alone, "office", "hi"))
