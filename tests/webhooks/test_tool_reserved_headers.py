"""A webhook tool may not configure a header Parley sets on its request: refused where the agent is
defined (YAML, API, Python), naming the field, instead of a tool that fails on every call."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfigError, load_agent
from parley.webhooks.signing import SIGNATURE_HEADER
from parley.webhooks.tool import RESERVED_HEADERS
from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.test_webhook_tool import call, registry, tool_settings


@pytest.mark.parametrize(
    "header", ["Content-Type", "content-length", "Host", SIGNATURE_HEADER, "Parley-Call-Id"]
)
def test_a_reserved_header_is_refused_with_the_tool(header: str) -> None:
    with pytest.raises(ValidationError) as raised:
        tool_settings("https://api.example.com/", headers={"Authorization": "token", header: "token"})
    [error] = raised.value.errors()
    assert error["loc"] == ("headers",) and error["type"] == "reserved_header"
    assert f"{header} is set by Parley and cannot be configured" in error["msg"]


def test_every_header_the_request_sets_is_reserved() -> None:
    assert {SIGNATURE_HEADER.lower(), "parley-call-id", "content-type", "user-agent"} <= RESERVED_HEADERS
    assert tool_settings("https://api.example.com/", headers={"X-Api-Key": "token"}).headers == {
        "X-Api-Key": "token"
    }


def test_a_yaml_agent_with_a_reserved_header_names_the_file_and_the_field(tmp_path: Path) -> None:
    file = tmp_path / "booker.yaml"
    file.write_text(
        "name: booker\n"
        "tools:\n"
        "  - {name: book, kind: webhook, url: 'https://api.example.com/', headers: {Content-Type: token}}\n",
        encoding="utf-8",
    )
    with pytest.raises(
        AgentConfigError, match=r"(?s)booker\.yaml.*tools\.0\.headers.*Content-Type is set by Parley"
    ):
        load_agent(file)


async def test_a_tool_stored_before_the_check_still_fails_in_words_without_a_request() -> None:
    stored = tool_settings("http://127.0.0.1/").model_copy(update={"headers": {"Host": "booking_token"}})
    async with receiving(Receiver()) as receiver:
        reserved = stored.model_copy(update={"url": receiver.url})
        ok, content = await call(registry(reserved), day="x")
    assert not ok and "set by Parley" in content and receiver.received == []
