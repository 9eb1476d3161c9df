"""Tools the agent can call: JSON-schema validated arguments, timeouts, errors reported to the model.

The engine treats every tool alike. What a tool may do to the call (end it, speak while it works) it
asks through its result (``ToolResult``) or its ``CallContext``; nothing is special-cased by name.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import jsonschema
import structlog

from parley.engine.agent import ToolSettings
from parley.engine.messages import CallMessages, NoMessages
from parley.engine.schema_checks import (
    BROKEN_SCHEMA_ERRORS,
    UnsupportedSchema,
    check_schema,
    validator,
    without_patterns,
)
from parley.engine.transport import CallControls
from parley.providers.llm.base import ToolCall, ToolSpec

log = structlog.get_logger("parley.engine.tools")

ToolHandler = Callable[[dict[str, Any]], Awaitable[Any]]

DTMF_PATTERN = r"^[0-9*#]{1,32}$"
"""Keypad digits a tool may send (``send_dtmf``): the twelve keys, at most 32 at once."""
BUILTIN_PATTERNS = frozenset({DTMF_PATTERN})
"""The only ``pattern`` values enforced on arguments: Parley's own, which cannot backtrack (one character
class, bounded). Any other regex could take exponential time over an argument: it is shown to the model
and left unchecked (``schema_checks.without_patterns``)."""
DEFAULT_FILLER = "One moment, let me check."
FILLER_AFTER_S = 1.0
"""A tool still running this long after it started gets the filler said, so the caller is not left in
silence."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler
    timeout_s: float = 5.0
    side_effect: bool = False
    """Side-effect tools run only once everything said before them was heard and the reply still stands."""
    filler: bool = True
    """Say the agent's filler when this tool keeps the caller waiting (off for tools that act on the line,
    where words would be in the way)."""
    closes_call: bool = False
    """This tool hangs up: a grounded agent's example call shows it used on goodbye."""

    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, self.description, self.parameters)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """A handler's result with what it asks of the call: ``end_call`` hangs up once the reply was heard.

    A handler may return any JSON-able value instead; that is ``ToolResult(value)``.
    """

    value: Any = None
    end_call: bool = False


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    call: ToolCall
    ok: bool
    content: str
    """What the model sees: the JSON result, or the error in words it can act on."""
    end_call: bool = False
    """The tool asked to end the call once what is being said was heard."""


@dataclass(slots=True)
class ToolScope:
    """What one running tool call may do to the reply it belongs to (bound by the engine per call)."""

    say: Callable[[str], None] | None = None
    end_requested: bool = False


_scope: ContextVar[ToolScope | None] = ContextVar("parley_tool_scope", default=None)


class ToolOutsideCall(RuntimeError):
    """``CallContext.say``/``end_call`` used outside a running tool call."""


class ToolSchemaError(ValueError):
    """A tool whose ``parameters`` schema is refused at registration (``schema_checks``)."""


@dataclass(slots=True)
class CallContext:
    """What a tool handler knows of the call it runs in, and what it may ask of it.

    One per call; a Python tool receives it as a parameter annotated ``CallContext``.
    """

    call_id: str = ""
    caller_number: str | None = None
    """The caller's phone number (E.164) on a phone call; ``None`` in the browser."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """The call's metadata as the integrator gave it (``POST /v1/agents/{id}/sessions``, an outbound
    job's); the caller's name is not one of its keys: it is ``caller_name``."""
    controls: CallControls = field(default_factory=CallControls)
    """What the line can do (transfer, keypad tones)."""
    messages: CallMessages = field(default_factory=NoMessages)
    """Where texts and emails go (the notification outbox of a call on the books; none by default)."""
    caller_name: str | None = None
    """The caller's name (``{{caller.name}}``) when the call was started with one; last, so that
    positional construction keeps working."""

    async def say(self, text: str) -> None:
        """Speak ``text`` now, while the tool goes on working (it is queued after what is being said)."""
        scope = _running("say")
        if scope.say is not None and text.strip():
            scope.say(text.strip())

    def end_call(self) -> None:
        """Hang up once the agent's reply has been heard."""
        _running("end_call").end_requested = True


ToolFactory = Callable[[CallContext], Tool]
"""Makes a tool bound to one call's context (a Python agent's function)."""


@runtime_checkable
class HasCodeTools(Protocol):
    """An agent whose tools are Python functions (``parley.Agent``) besides its configured ones."""

    def code_tools(self) -> Sequence[ToolFactory]: ...


def _running(what: str) -> ToolScope:
    scope = _scope.get()
    if scope is None:
        raise ToolOutsideCall(f"CallContext.{what}() works only while one of the agent's tools runs")
    return scope


class ToolRegistry:
    """The tools of one call, and how the caller is kept company while they run."""

    def __init__(self, filler: str | None = DEFAULT_FILLER, filler_after_s: float = FILLER_AFTER_S) -> None:
        self._tools: dict[str, Tool] = {}
        self._checked: dict[str, dict[str, Any]] = {}
        """Per tool, the schema its arguments are validated against (``without_patterns``)."""
        self.filler = filler
        """Said once per reply when a tool with ``filler`` set runs longer than ``filler_after_s``."""
        self.filler_after_s = filler_after_s

    def register(self, tool: Tool) -> None:
        """Add ``tool``; ``ToolSchemaError`` if its arguments could not be validated during a call (a
        ``$ref`` to nothing or to itself, not a JSON schema). Its patterns are not enforced, but Parley's
        own (``BUILTIN_PATTERNS``)."""
        checked = without_patterns(tool.parameters, BUILTIN_PATTERNS)
        try:
            check_schema(checked, allowed_patterns=BUILTIN_PATTERNS)
        except UnsupportedSchema as exc:
            raise ToolSchemaError(f"tool '{tool.name}': parameters: {exc}") from None
        self._tools[tool.name] = tool
        self._checked[tool.name] = checked

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def closing_tool(self) -> str | None:
        """The name of the tool that hangs up, if the agent has one."""
        return next((t.name for t in self._tools.values() if t.closes_call), None)

    def closes_call(self, name: str) -> bool:
        """Whether the tool called ``name`` hangs up."""
        tool = self._tools.get(name)
        return tool is not None and tool.closes_call

    def actions(self) -> list[str]:
        """The names of the tools that do something other than hang up."""
        return [t.name for t in self._tools.values() if not t.closes_call]

    def specs(self) -> list[ToolSpec]:
        return [t.spec() for t in self._tools.values()]

    def __len__(self) -> int:
        return len(self._tools)

    async def execute(self, call: ToolCall, scope: ToolScope | None = None) -> ToolOutcome:
        """Run one call; every failure becomes an outcome the model can read, never an exception."""
        tool = self._tools.get(call.name)
        if tool is None:
            known = ", ".join(sorted(self._tools)) or "none"
            return ToolOutcome(call, False, f"error: unknown tool '{call.name}'. Available tools: {known}.")
        try:
            checked = self._checked.get(call.name, tool.parameters)
            error = jsonschema.exceptions.best_match(validator(checked).iter_errors(call.arguments))
        except BROKEN_SCHEMA_ERRORS as exc:  # a schema the checks missed, or changed since: still an outcome
            log.error("tool schema unusable", tool=call.name, call_id=call.id, error=repr(exc)[:500])
            return ToolOutcome(
                call, False, f"error: {call.name} is unavailable: its parameter schema is broken"
            )
        if error is not None:
            return ToolOutcome(call, False, f"error: invalid arguments for {call.name}: {error.message}")
        scope = scope or ToolScope()
        token = _scope.set(scope)
        try:
            async with asyncio.timeout(tool.timeout_s):
                result = await tool.handler(call.arguments)
        except TimeoutError:
            return ToolOutcome(call, False, f"error: {call.name} timed out after {tool.timeout_s:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return ToolOutcome(call, False, f"error: {call.name} failed: {exc}")
        finally:
            _scope.reset(token)
        if isinstance(result, ToolResult):
            end = result.end_call or scope.end_requested
            return ToolOutcome(call, True, _as_json(result.value), end_call=end)
        return ToolOutcome(call, True, _as_json(result), end_call=scope.end_requested)


def _as_json(value: Any) -> str:
    return json.dumps(value, default=str)


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


def object_schema(properties: Mapping[str, Any], required: list[str]) -> dict[str, Any]:
    """A closed JSON-schema object: the shape every built-in's arguments take."""
    return {
        "type": "object",
        "properties": dict(properties),
        "required": required,
        "additionalProperties": False,
    }
