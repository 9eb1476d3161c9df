"""Webhook tools: the agent calls a tenant's service, signed, with headers from secrets, and hears the
answer, or an error it can put into words."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfig, ToolSettings
from parley.engine.tools import CallContext, ToolRegistry
from parley.providers.llm.base import ToolCall
from parley.stack import build_tools
from parley.webhooks.guard import UrlPolicy
from parley.webhooks.signing import verify
from parley.webhooks.tool import SIGNING_SECRET, WebhookContext, secret_names, webhook_tool
from tests.webhooks.receiver import Receiver, receiving

SIGNING = "whsec_tool_signing"
SECRETS = {SIGNING_SECRET: SIGNING, "booking_token": "Bearer s3cret-token"}
LOCAL = UrlPolicy(allow_http=True, allow_private_hosts=frozenset({"127.0.0.1"}))
PARAMS = {
    "type": "object",
    "properties": {"day": {"type": "string"}, "guests": {"type": "integer"}},
    "required": ["day"],
}


def tool_settings(url: str, **overrides: object) -> ToolSettings:
    values: dict[str, object] = {
        "name": "book_table",
        "description": "Book a table.",
        "kind": "webhook",
        "url": url,
        "headers": {"Authorization": "booking_token"},
        "parameters": PARAMS,
        "timeout_s": 3,
    }
    values.update(overrides)
    return ToolSettings.model_validate(values)


def registry(
    settings: ToolSettings,
    *,
    policy: UrlPolicy = LOCAL,
    secrets: dict[str, str] = SECRETS,
    max_bytes: int = 65536,
) -> ToolRegistry:
    tools = ToolRegistry()
    context = WebhookContext(policy, secrets, max_bytes, call=CallContext(call_id="call_42"))
    tools.register(webhook_tool(settings, context))
    return tools


async def call(tools: ToolRegistry, **arguments: object) -> tuple[bool, str]:
    outcome = await tools.execute(ToolCall("c1", "book_table", dict(arguments)))
    return outcome.ok, outcome.content


async def test_the_request_is_signed_json_with_secret_headers_and_the_answer_reaches_the_model() -> None:
    receiver = Receiver(reply=b'{"booked": true, "table": 7}')
    async with receiving(receiver):
        ok, content = await call(registry(tool_settings(receiver.url + "/bookings")), day="friday", guests=2)
    assert ok and json.loads(content) == {"booked": True, "table": 7}
    (request,) = receiver.received
    assert (request.method, request.path) == ("POST", "/bookings")
    assert request.json() == {
        "tool": "book_table",
        "arguments": {"day": "friday", "guests": 2},
        "call_id": "call_42",
    }
    assert request.headers["authorization"] == "Bearer s3cret-token"
    assert request.headers["parley-call-id"] == "call_42"
    assert request.headers["content-type"] == "application/json"
    verify(SIGNING, request.headers["parley-signature"], request.body)


async def test_a_get_sends_the_arguments_as_its_query_and_signs_that() -> None:
    receiver = Receiver(reply=b"open until six", content_type="text/plain")
    async with receiving(receiver):
        ok, content = await call(
            registry(tool_settings(receiver.url + "/hours?shop=1", method="GET")), day="sunday"
        )
    assert ok and json.loads(content) == "open until six"
    (request,) = receiver.received
    assert request.method == "GET" and request.body == b""
    assert request.query == "shop=1&day=sunday&call_id=call_42"
    verify(SIGNING, request.headers["parley-signature"], request.query.encode())


@pytest.mark.parametrize(
    ("receiver", "expected"),
    [
        (Receiver(statuses=[409], reply=b"that slot is taken"), "HTTP 409: that slot is taken"),
        (Receiver(statuses=[500], reply=b""), "HTTP 500"),
        (Receiver(reply=b"x" * 5000), "more than 2048 bytes"),
    ],
)
async def test_a_failing_service_becomes_words_for_the_model(receiver: Receiver, expected: str) -> None:
    async with receiving(receiver):
        ok, content = await call(registry(tool_settings(receiver.url), max_bytes=2048), day="monday")
    assert not ok and content.startswith("error: book_table failed:") and expected in content


async def test_a_slow_service_times_out_into_an_error() -> None:
    receiver = Receiver(hold=True)
    async with receiving(receiver):
        ok, content = await call(registry(tool_settings(receiver.url, timeout_s=0.3)), day="monday")
    assert not ok and "timed out" in content


async def test_no_secret_reaches_the_model_in_an_error() -> None:
    """A service that echoes the Authorization header, or a value the HTTP client refuses and quotes (a
    secret stored with a line break, before the API refused one): the model hears ``[secret]``."""
    echo = Receiver(statuses=[401], reply=b"bad token Bearer s3cret-token")
    async with receiving(echo):
        ok, content = await call(registry(tool_settings(echo.url)), day="monday")
    assert not ok and "HTTP 401: bad token [secret]" in content and "s3cret" not in content
    broken = {**SECRETS, "booking_token": "Bearer s3cret-token\r\n"}
    async with receiving(Receiver()) as receiver:
        ok, content = await call(registry(tool_settings(receiver.url), secrets=broken), day="monday")
    assert not ok and "could not be reached" in content and "s3cret" not in content
    assert receiver.received == []


async def test_missing_secrets_and_refused_urls_fail_without_a_request() -> None:
    async with receiving(Receiver()) as receiver:
        no_signing = registry(tool_settings(receiver.url), secrets={"booking_token": "t"})
        assert "no secret named 'webhook_signing_secret'" in (await call(no_signing, day="x"))[1]
        no_header = registry(tool_settings(receiver.url), secrets={SIGNING_SECRET: "s"})
        assert "no secret named 'booking_token'" in (await call(no_header, day="x"))[1]
        https_only = registry(tool_settings(receiver.url), policy=UrlPolicy())
        assert "does not call that URL" in (await call(https_only, day="x"))[1]
        private = registry(tool_settings(receiver.url), policy=UrlPolicy(allow_http=True))
        assert "not a public address" in (await call(private, day="x"))[1]
        # refused when the agent is saved (test_tool_reserved_headers.py); one stored before still fails
        stored = tool_settings(receiver.url).model_copy(update={"headers": {"Host": "booking_token"}})
        reserved = registry(stored)
        assert "set by Parley" in (await call(reserved, day="x"))[1]
    assert receiver.received == []


def test_webhook_tool_settings_are_checked_where_the_agent_is_defined() -> None:
    with pytest.raises(ValidationError, match="needs a url"):
        ToolSettings(name="x", kind="webhook")
    with pytest.raises(ValidationError, match="without credentials"):
        tool_settings("https://user:pw@api.example.com/")
    with pytest.raises(ValidationError, match="only for webhook tools"):
        ToolSettings(name="x", kind="static", url="https://api.example.com/")
    with pytest.raises(ValidationError):  # a header value is a secret's NAME, never a value
        tool_settings("https://api.example.com/", headers={"Authorization": "Bearer abc"})


def test_the_agent_names_the_secrets_its_call_needs_and_build_tools_uses_them() -> None:
    agent = AgentConfig(tools=[tool_settings("https://api.example.com/bookings")])
    assert secret_names(agent) == {"booking_token", SIGNING_SECRET}
    assert secret_names(AgentConfig()) == set()
    tools = build_tools(agent, secrets=SECRETS)
    assert [spec.name for spec in tools.specs()] == ["book_table"]
