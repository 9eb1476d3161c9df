"""Tools the agent can call: JSON-schema validated arguments, timeouts, errors reported to the model."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import jsonschema

from parley.engine.agent import ToolSettings
from parley.providers.llm.base import ToolCall, ToolSpec

ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler
    timeout_s: float = 5.0
    side_effect: bool = False
    """Side-effect tools run only once everything said before them was heard and the reply still stands."""

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    call: ToolCall
    ok: bool
    content: str
    """What the model sees: the JSON result, or the error in words it can act on."""


class ToolRegistry:
    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(self, tool: Tool) -> None:
        jsonschema.Draft202012Validator.check_schema(tool.parameters)
        self._tools[tool.name] = tool

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def specs(self) -> list[ToolSpec]:
        return [t.spec() for t in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)

    async def execute(self, call: ToolCall) -> ToolOutcome:
        """Run one call; every failure becomes an outcome the model can read, never an exception."""
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return ToolOutcome(call, False, f"error: unknown tool '{call.name}'. Available tools: {known}.")
        try:
            jsonschema.validate(call.arguments, tool.parameters)
        except jsonschema.ValidationError as exc:
            return ToolOutcome(call, False, f"error: invalid arguments for {call.name}: {exc.message}")
        try:
            async with asyncio.timeout(tool.timeout_s):
                result = await tool.handler(call.arguments)
        except TimeoutError:
            return ToolOutcome(call, False, f"error: {call.name} timed out after {tool.timeout_s:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return ToolOutcome(call, False, f"error: {call.name} failed: {exc}")
        return ToolOutcome(call, True, json.dumps(result, default=str))


def static_tool(settings: ToolSettings) -> Tool:
    """A tool that always returns the configured result: for demos, tests and canned lookups."""
    value = settings.result

    async def handler(_: dict[str, Any]) -> Any:
        return value

    return Tool(
        settings.name,
        settings.description,
        settings.parameters,
        handler,
        settings.timeout_s,
        settings.side_effect,
    )
