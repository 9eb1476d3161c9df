"""A tool's ``parameters`` schema: refused when it would break validation or make it explode, whether it
comes from an agent's configuration (saved through the API) or from Python; a ``pattern`` is shown to the
model but never run by the backtracking regex engine over a caller-steered argument."""

from __future__ import annotations

import time
from typing import Annotated, Any

import pytest
from pydantic import Field, ValidationError

from parley import Agent
from parley.engine.agent import AgentConfig
from parley.engine.tools import Tool, ToolRegistry, ToolSchemaError
from parley.providers.llm.base import ToolCall
from parley.stack import build_tools

BACKTRACKING = {"type": "object", "properties": {"code": {"type": "string", "pattern": "^(a+)+$"}}}
CYCLIC = {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}
MISSING = {"type": "object", "properties": {"day": {"$ref": "#/$defs/missing"}}}
REFUSED = [
    (MISSING, r"'#/\$defs/missing' points to nothing"),
    (CYCLIC, r"'#/\$defs/n' leads back to itself"),
    ({"type": "object", "properties": {"x": {"$ref": "#x"}}}, "not a JSON pointer"),
    ({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}, r"only local \$ref"),
]


async def echo(arguments: dict[str, Any]) -> dict[str, Any]:
    return arguments


def tool_config(parameters: dict[str, Any]) -> dict[str, Any]:
    return {"tools": [{"name": "lookup", "kind": "static", "result": "ok", "parameters": parameters}]}


@pytest.mark.parametrize(("schema", "message"), REFUSED)
def test_an_unsafe_tool_schema_is_refused_when_the_agent_is_saved(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message) as refused:
        AgentConfig.model_validate(tool_config(schema))
    assert refused.value.errors()[0]["loc"] == ("tools", 0, "parameters")


@pytest.mark.parametrize(("schema", "message"), REFUSED)
def test_an_unsafe_tool_schema_is_refused_when_a_python_tool_is_registered(
    schema: dict[str, Any], message: str
) -> None:
    with pytest.raises(ToolSchemaError, match=message):
        ToolRegistry().register(Tool("lookup", "", schema, echo))


async def test_a_pattern_is_shown_to_the_model_but_never_run_over_an_argument() -> None:
    """``^(a+)+$`` over 40 a's and a "!" would take Python's ``re`` hours: the server would stall."""
    config = AgentConfig.model_validate(tool_config(BACKTRACKING))
    tools = build_tools(config)
    assert tools.specs()[0].parameters["properties"]["code"]["pattern"] == "^(a+)+$", "the model sees it"
    outcome = await tools.execute(ToolCall("1", "lookup", {"code": "a" * 40 + "!"}))
    assert outcome.ok
    refused = await tools.execute(ToolCall("2", "lookup", {"code": 7}))
    assert not refused.ok and "is not of type 'string'" in refused.content, "the rest is still enforced"


async def test_a_pattern_from_a_typed_python_tool_is_enforced_by_pydantic_in_linear_time() -> None:
    """The handler's own pydantic model checks it with the Rust regex engine, which cannot backtrack."""
    agent = Agent("shop")

    @agent.tool
    async def find_order(code: Annotated[str, Field(pattern="^(a+)+$")]) -> str:
        """Look an order up by its code."""
        return code

    tools = build_tools(agent.config)
    outcome = await tools.execute(ToolCall("1", "find_order", {"code": "a" * 40 + "!"}))
    assert not outcome.ok and "should match pattern" in outcome.content


def test_names_are_not_keywords_and_local_references_still_work() -> None:
    schema = {
        "type": "object",
        "$defs": {"day": {"enum": ["Monday", "Tuesday"]}, "pattern": {"type": "string"}},
        "properties": {
            "pattern": {"type": "string"},
            "$ref": {"$ref": "#/$defs/day"},
            "also": {"$ref": "#/properties/%24ref"},
            "style": {"$ref": "#/$defs/pattern"},
        },
    }
    config = AgentConfig.model_validate(tool_config(schema))
    assert config.tools[0].parameters == schema
    ToolRegistry().register(Tool("lookup", "", schema, echo))


def test_the_built_in_keypad_pattern_is_still_allowed() -> None:
    config = AgentConfig.model_validate({"tools": [{"name": "send_dtmf"}]})
    assert [spec.name for spec in build_tools(config).specs()] == ["send_dtmf"]


def test_references_that_multiply_the_schema_are_refused() -> None:
    """Each level refers twice to the one below: 2^20 subschemas to validate one string."""
    defs: dict[str, Any] = {"d0": {"type": "string"}}
    for i in range(1, 21):
        defs[f"d{i}"] = {"allOf": [{"$ref": f"#/$defs/d{i - 1}"}, {"$ref": f"#/$defs/d{i - 1}"}]}
    schema = {"type": "object", "$defs": defs, "properties": {"q": {"$ref": "#/$defs/d20"}}}
    started = time.monotonic()
    with pytest.raises(ValidationError, match="expands to more than 2000 subschemas"):
        AgentConfig.model_validate(tool_config(schema))
    assert time.monotonic() - started < 1.0
