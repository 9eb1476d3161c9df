"""The built-in ``transfer_call`` tool: the model picks one of the agent's destinations by name; the line
does the transfer, and a line that cannot is an error the model can say."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfig
from parley.engine.transport import CallControls
from parley.providers.llm.base import ToolCall
from parley.stack import build_tools

DESTINATIONS = {"sales": "+1 415 555 0100", "front desk": "sip:desk@pbx.example.com"}


def agent() -> AgentConfig:
    return AgentConfig.model_validate({"tools": [{"name": "transfer_call", "destinations": DESTINATIONS}]})


def transfer(destination: str) -> ToolCall:
    return ToolCall("t1", "transfer_call", {"destination": destination})


async def test_the_model_names_a_destination_and_the_line_transfers_to_its_target() -> None:
    controls = CallControls()
    sent: list[str] = []

    async def handler(target: str) -> None:
        sent.append(target)

    controls.transfer_handler = handler
    tools = build_tools(agent(), controls)
    tool = tools.get("transfer_call")
    assert tool is not None and tool.side_effect, "a transfer commits only once what precedes it was heard"
    [spec] = tools.specs()
    assert spec.parameters["properties"]["destination"]["enum"] == ["front desk", "sales"]

    outcome = await tools.execute(transfer("sales"))
    assert outcome.ok and sent == ["+14155550100"]
    assert (await tools.execute(transfer("front desk"))).ok and sent[-1] == "sip:desk@pbx.example.com"


async def test_a_number_the_model_makes_up_is_never_dialed() -> None:
    controls = CallControls()
    sent: list[str] = []

    async def handler(target: str) -> None:
        sent.append(target)

    controls.transfer_handler = handler
    tools = build_tools(agent(), controls)
    for made_up in ("+19005550100", "sip:attacker@example.com", "SALES"):
        outcome = await tools.execute(transfer(made_up))
        assert not outcome.ok and "invalid arguments" in outcome.content
    assert sent == []


async def test_a_call_that_cannot_be_transferred_is_an_error_the_model_can_say() -> None:
    tools = build_tools(agent(), CallControls())  # a browser call: no line to transfer
    outcome = await tools.execute(transfer("sales"))
    assert not outcome.ok
    assert "cannot be transferred" in outcome.content and "tell the caller" in outcome.content


def test_destinations_are_validated_with_the_agent() -> None:
    for tools in (
        [{"name": "transfer_call"}],
        [{"name": "transfer_call", "destinations": {"sales": "415-555-0100"}}],
        [{"name": "transfer_call", "destinations": {"sales": "sip:no-host"}}],
        [{"name": "lookup", "kind": "static", "destinations": {"sales": "+14155550100"}}],
    ):
        with pytest.raises(ValidationError):
            AgentConfig.model_validate({"tools": tools})
