"""The Python API: ``Agent``, ``@agent.tool`` (schemas from type hints), ``CallContext``, and loading an
agent by ``module:attribute`` as ``parley serve --agent`` does."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import pytest
from pydantic import BaseModel, Field

from parley import Agent, CallContext, ToolResult
from parley.agent_api import load_agent_target
from parley.commands.serve import load_served_agent
from parley.engine.agent import AgentConfig, AgentConfigError
from parley.providers.llm.base import ToolCall
from parley.stack import build_tools


class Size(Enum):
    SMALL = "small"
    LARGE = "large"


class Address(BaseModel):
    street: str
    city: str


def test_the_schema_comes_from_type_hints_and_the_description_from_the_docstring() -> None:
    agent = Agent("pizza", "You take pizza orders.")

    @agent.tool
    async def order_pizza(
        topping: Annotated[str, "one topping, e.g. mushrooms"],
        size: Size,
        address: Address,
        crust: Literal["thin", "thick"] = "thin",
        count: int = Field(1, ge=1, le=10),
        *,
        ctx: CallContext,
    ) -> str:
        """Order pizza for delivery.

        Args:
            count: how many pizzas
        """
        return "ok"

    [spec] = build_tools(agent.config).specs()
    assert spec.name == "order_pizza" and spec.description == "Order pizza for delivery."
    schema = spec.parameters
    assert set(schema["properties"]) == {"topping", "size", "address", "crust", "count"}, "ctx is hidden"
    assert schema["required"] == ["topping", "size", "address"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["topping"] == {"type": "string", "description": "one topping, e.g. mushrooms"}
    assert schema["properties"]["crust"]["enum"] == ["thin", "thick"]
    assert schema["properties"]["count"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 10,
        "default": 1,
        "description": "how many pizzas",
    }
    assert "title" not in str(schema), "no pydantic titles: words a small model need not read"


async def test_arguments_are_parsed_into_the_declared_types_and_the_context_is_passed() -> None:
    agent = Agent("pizza")
    got: dict[str, Any] = {}

    @agent.tool
    async def order_pizza(size: Size, address: Address, ctx: CallContext) -> dict[str, str]:
        """Order a pizza."""
        got.update(size=size, address=address, call=ctx.call_id, caller=ctx.caller_number)
        return {"eta": "30 minutes"}

    tools = build_tools(agent.config, context=CallContext(call_id="call_1", caller_number="+15550100"))
    outcome = await tools.execute(
        ToolCall("1", "order_pizza", {"size": "large", "address": {"street": "1 Main St", "city": "Oslo"}})
    )
    assert outcome.ok and outcome.content == '{"eta": "30 minutes"}'
    assert got == {
        "size": Size.LARGE,
        "address": Address(street="1 Main St", city="Oslo"),
        "call": "call_1",
        "caller": "+15550100",
    }
    wrong = await tools.execute(
        ToolCall("2", "order_pizza", {"size": "huge", "address": {"street": "x", "city": "y"}})
    )
    assert not wrong.ok and "invalid arguments" in wrong.content and "huge" in wrong.content


async def test_plain_functions_pydantic_results_and_tool_results_work_too() -> None:
    agent = Agent("shop")

    @agent.tool(name="find", description="Find an address.", timeout_s=2.0, side_effect=True)
    def lookup(city: str) -> Address:  # a plain function runs off the event loop
        return Address(street="1 Main St", city=city)

    @agent.tool
    async def hang_up() -> ToolResult:
        """End the call."""
        return ToolResult({"bye": True}, end_call=True)

    tools = build_tools(agent.config)
    find = tools.get("find")
    assert find is not None and find.side_effect and find.timeout_s == 2.0
    assert find.description == "Find an address."
    outcome = await tools.execute(ToolCall("1", "find", {"city": "Oslo"}))
    assert outcome.ok and outcome.content == '{"street": "1 Main St", "city": "Oslo"}'
    ended = await tools.execute(ToolCall("2", "hang_up", {}))
    assert ended.ok and ended.end_call


def test_mistakes_are_reported_when_the_agent_is_written() -> None:
    with pytest.raises(AgentConfigError, match="max_reply_tokens"):
        Agent("x", max_reply_tokens=0)
    agent = Agent("x", tools=[{"name": "end_call"}])
    with pytest.raises(AgentConfigError, match="already has a tool named 'end_call'"):

        @agent.tool
        async def end_call() -> None:
            """Clash with the built-in."""

    with pytest.raises(AgentConfigError, match="'city' needs a type hint"):

        @agent.tool
        async def weather(city) -> str:  # type: ignore[no-untyped-def]
            return "sunny"


async def test_an_optional_context_is_passed_and_kept_out_of_the_schema() -> None:
    """``ctx: CallContext | None = None`` (a tool also callable outside a call) used to crash at
    ``@agent.tool`` with a pydantic schema error about ``CallControls``."""
    agent = Agent("front-desk")
    seen: list[str | None] = []

    @agent.tool
    async def book(day: str, ctx: CallContext | None = None) -> str:
        """Book a visit."""
        seen.append(ctx.call_id if ctx is not None else None)
        return day

    @agent.tool
    def cancel(day: str, ctx: Optional[Annotated[CallContext, "the call"]] = None) -> str:  # noqa: UP045
        """Cancel a visit."""
        seen.append(ctx.call_id if ctx is not None else None)
        return day

    tools = build_tools(agent.config, context=CallContext(call_id="call_7", caller_number="+15550100"))
    for spec in tools.specs():
        assert set(spec.parameters["properties"]) == {"day"}, "the context is not shown to the model"
        assert spec.parameters["required"] == ["day"]
    booked = await tools.execute(ToolCall("1", "book", {"day": "Monday"}))
    cancelled = await tools.execute(ToolCall("2", "cancel", {"day": "Tuesday"}))
    assert booked.ok and cancelled.ok
    assert seen == ["call_7", "call_7"]


def test_a_hint_that_cannot_be_resolved_or_a_mixed_context_is_a_config_error() -> None:
    agent = Agent("front-desk")
    with pytest.raises(AgentConfigError, match=r"tool 'ship': cannot resolve its type hints.*'Adress'"):

        @agent.tool
        async def ship(address: Adress) -> str:  # type: ignore[name-defined]  # noqa: F821
            """Ship to an address (the type's name is misspelt)."""
            return "ok"

    with pytest.raises(AgentConfigError, match="parameter 'ctx' mixes CallContext with other types"):

        @agent.tool
        async def book(day: str, ctx: CallContext | str) -> str:
            """Book a visit."""
            return day


def test_the_config_is_the_yaml_form_and_keeps_the_tools_in_this_process() -> None:
    agent = Agent("front-desk", "Be brief.", knowledge=["We open at 9."], first_message="Hello!")

    @agent.tool
    async def book(day: str) -> str:
        """Book a visit."""
        return day

    config = agent.config
    assert isinstance(config, AgentConfig)
    assert (config.name, config.system_prompt, config.knowledge, config.first_message) == (
        "front-desk",
        "Be brief.",
        ["We open at 9."],
        "Hello!",
    )
    again = AgentConfig.model_validate_json(config.model_dump_json())
    assert again == AgentConfig.model_validate(config.model_dump()), "nothing but settings is stored"
    assert [s.name for s in build_tools(config).specs()] == ["book"]
    assert build_tools(again).specs() == [], "a copy from storage carries no code"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory with the operator's agent module, as the current directory of ``parley serve``."""
    (tmp_path / "my_agents.py").write_text(
        "from parley import Agent\n"
        "agent = Agent('from-code', public=True)\n"
        "@agent.tool\n"
        "async def ping() -> str:\n"
        "    '''Ping.'''\n"
        "    return 'pong'\n"
        "not_an_agent = 42\n"
    )
    (tmp_path / "plain.yaml").write_text("name: from-yaml\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("my_agents", None)


def test_serve_loads_a_python_agent_by_module_and_attribute(project: Path) -> None:
    config = load_served_agent("my_agents:agent")
    assert config.name == "from-code" and [s.name for s in build_tools(config).specs()] == ["ping"]
    assert load_served_agent(str(project / "my_agents.py") + ":agent").name == "from-code"
    assert load_served_agent("plain.yaml").name == "from-yaml", "YAML agents work as before"


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("my_agents:nobody", "has no attribute 'nobody'"),
        ("my_agents:not_an_agent", "is a int, not a parley.Agent"),
        ("no_such_module:agent", "cannot import 'no_such_module'"),
        ("my_agents:", "expected module:attribute"),
    ],
)
def test_a_bad_agent_target_says_what_is_wrong(project: Path, target: str, message: str) -> None:
    with pytest.raises(AgentConfigError, match=message):
        load_agent_target(target)
