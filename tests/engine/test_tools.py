import asyncio
from typing import Any

import pytest

from parley.engine.tools import Tool, ToolRegistry
from parley.providers.llm.base import ToolCall

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


async def weather(args: dict[str, Any]) -> dict[str, Any]:
    return {"city": args["city"], "forecast": "sunny"}


async def slow(_: dict[str, Any]) -> None:
    await asyncio.sleep(5)


async def broken(_: dict[str, Any]) -> None:
    raise RuntimeError("backend down")


@pytest.fixture
def registry() -> ToolRegistry:
    tools = ToolRegistry()
    tools.register(Tool("weather", "Weather by city", SCHEMA, weather))
    tools.register(Tool("slow", "Never answers in time", {"type": "object"}, slow, timeout_s=0.05))
    tools.register(Tool("broken", "Always fails", {"type": "object"}, broken))
    return tools


async def test_valid_call_returns_json_result(registry: ToolRegistry) -> None:
    outcome = await registry.execute(ToolCall("1", "weather", {"city": "Paris"}))
    assert outcome.ok
    assert '"forecast": "sunny"' in outcome.content


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (ToolCall("1", "weather", {"town": "Paris"}), "invalid arguments"),
        (ToolCall("2", "nope", {}), "unknown tool 'nope'. Available tools: broken, slow, weather"),
        (ToolCall("3", "slow", {}), "timed out"),
        (ToolCall("4", "broken", {}), "backend down"),
    ],
)
async def test_failures_become_messages_for_the_model(
    registry: ToolRegistry, call: ToolCall, expected: str
) -> None:
    outcome = await registry.execute(call)
    assert not outcome.ok
    assert expected in outcome.content


def test_bad_schema_is_rejected_at_registration() -> None:
    with pytest.raises(Exception, match="not valid"):
        ToolRegistry().register(Tool("bad", "", {"type": "no-such-type"}, weather))
