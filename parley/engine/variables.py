"""Prompt variables: ``{{caller.name}}``, ``{{metadata.order_id}}``, ``{{now}}`` … filled in per call.

An agent's ``system_prompt`` and ``first_message`` are tenant text, so they are templates of a deliberately
small language: variables from a fixed set of roots, a few text filters, ``if`` blocks. No loops, calls,
arithmetic or assignments (nothing that can burn CPU or reach an object's internals), checked on the
parsed template when the agent is validated, and rendered by jinja2's sandbox on plain dicts only.
An unknown variable (``{{colour}}``, ``{{caller.nmae}}``) is an error at validation; ``metadata`` is the
only free-form root. A missing value (no caller name, an absent metadata key) renders as nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from difflib import get_close_matches
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

if TYPE_CHECKING:
    from jinja2 import Template

log = structlog.get_logger("parley.engine.variables")

FIELDS: dict[str, frozenset[str]] = {
    "caller": frozenset({"number", "name"}),
    "call": frozenset({"id", "direction", "number"}),
    "now": frozenset(),
}
"""The roots whose fields are fixed (``CallVariables.namespace``): a misspelt field is refused on save."""
FREE_FORM = frozenset({"metadata"})
"""Roots whose keys are the caller's own (``metadata.order.id``): any key may be mentioned."""
ROOTS = frozenset(FIELDS) | FREE_FORM
KNOWN = "caller.number, caller.name, call.id, call.direction, call.number, metadata.<key>, now"
"""What a template may mention (``call.number`` is the number dialled; ``now`` the call's start time)."""
_VARIABLES = (*sorted(ROOTS), *(f"{root}.{name}" for root, names in FIELDS.items() for name in sorted(names)))
FILTERS = frozenset({"upper", "lower", "title", "capitalize", "trim", "default", "d"})
TESTS = frozenset({"defined", "undefined", "none", "string", "number"})
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Const,
    nodes.Filter,
    nodes.Test,
    nodes.If,
    nodes.CondExpr,
    nodes.Not,
    nodes.And,
    nodes.Or,
    nodes.Compare,
    nodes.Operand,
    nodes.Concat,
)
_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)


class PromptTemplateError(ValueError):
    """A prompt template that is not valid: bad syntax, an unknown variable or a construct not allowed."""


class _Environment(ImmutableSandboxedEnvironment):
    """Looks up keys of the dicts it was given, and nothing else: no attributes of any object."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return self.undefined(obj=obj, name=attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(obj, Mapping) and isinstance(argument, str) and argument in obj:
            return obj[argument]
        return self.undefined(obj=obj, name=str(argument))


_ENV = _Environment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True)
_ENV.globals.clear()
_ENV.filters = {name: f for name, f in _ENV.filters.items() if name in FILTERS}
_ENV.tests = {name: t for name, t in _ENV.tests.items() if name in TESTS}


def has_template(text: str | None) -> bool:
    return bool(text) and ("{{" in text or "{%" in text or "{#" in text)  # type: ignore[operator]


def check_template(text: str) -> None:
    """Raise ``PromptTemplateError`` unless ``text`` is a template this module can render safely."""
    if not has_template(text):
        return
    _compiled(text)


@lru_cache(maxsize=256)
def _compiled(text: str) -> Template:
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise PromptTemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:  # jinja2's parser recurses once per bracket: "{{ ((((…" is a tenant's
        raise PromptTemplateError("the template nests brackets too deeply") from exc
    for node in tree.find_all(nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            raise PromptTemplateError(
                f"'{type(node).__name__}' is not allowed in a prompt: use {{{{ variables }}}}, the filters "
                f"{', '.join(sorted(FILTERS))}, and {{% if %}} blocks"
            )
        if isinstance(node, nodes.Name) and node.name not in ROOTS:
            raise PromptTemplateError(_unknown(node.name))
        if isinstance(node, nodes.Getattr | nodes.Getitem):
            _check_field(node)
        if isinstance(node, nodes.Filter) and node.name not in FILTERS:
            raise PromptTemplateError(
                f"filter '{node.name}' is not allowed (allowed: {', '.join(sorted(FILTERS))})"
            )
        if isinstance(node, nodes.Test) and node.name not in TESTS:
            raise PromptTemplateError(
                f"test '{node.name}' is not allowed (allowed: {', '.join(sorted(TESTS))})"
            )
    try:
        return _ENV.from_string(tree)
    except RecursionError as exc:  # the code generator walks the same tree
        raise PromptTemplateError("the template nests brackets too deeply") from exc


def _check_field(node: nodes.Getattr | nodes.Getitem) -> None:
    """Refuse ``caller.nmae``, ``call['directoin']`` or ``caller.name.x``: they would render as nothing.

    A lookup is followed down to its root variable; below a fixed root only one known field may follow.
    A lookup on anything else (a filter's result) is left to render, empty when there is nothing."""
    path: list[str | None] = []
    target: nodes.Node = node
    while isinstance(target, nodes.Getattr | nodes.Getitem):
        if isinstance(target, nodes.Getattr):
            path.append(target.attr)
        elif isinstance(target.arg, nodes.Const) and isinstance(target.arg.value, str):
            path.append(target.arg.value)
        else:
            path.append(None)  # a key computed at render time
        target = target.node
    if not isinstance(target, nodes.Name) or target.name not in FIELDS:
        return
    path.reverse()
    shown = target.name + "".join(f".{step}" if step is not None else "[…]" for step in path)
    if len(path) != 1 or path[0] not in FIELDS[target.name]:
        raise PromptTemplateError(_unknown(shown))


def _unknown(variable: str) -> str:
    """The error for a variable a call never has, with the nearest known one when it looks misspelt."""
    near = get_close_matches(variable, _VARIABLES, n=1, cutoff=0.75)
    hint = f"; did you mean '{near[0]}'?" if near else ""
    return f"unknown prompt variable '{variable}'{hint} (known: {KNOWN})"


@dataclass(frozen=True, slots=True)
class CallVariables:
    """What a call's prompts may mention. Filled by whoever starts the call (API, phone, outbound job)."""

    call_id: str = ""
    direction: str = ""
    caller_number: str = ""
    caller_name: str = ""
    called_number: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    time_zone: str | None = None
    """IANA zone for ``now`` (an outbound job's zone); UTC when absent or unknown."""

    def namespace(self) -> dict[str, Any]:
        return {
            "caller": {"number": self.caller_number, "name": self.caller_name},
            "call": {"id": self.call_id, "direction": self.direction, "number": self.called_number},
            "metadata": _plain(self.metadata),
            "now": self._now(),
        }

    def _now(self) -> str:
        zone: ZoneInfo | None = None
        if self.time_zone:
            try:
                zone = ZoneInfo(self.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                zone = None
        at = (self.started_at or datetime.now(UTC)).astimezone(zone or UTC)
        label = self.time_zone if zone is not None else "UTC"
        return f"{at:%A} {at.day} {at:%B %Y}, {at:%H:%M} ({label})"


def _plain(value: Any) -> Any:
    """Metadata as nested dicts of text, numbers and booleans (lists become comma-separated text)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return ", ".join(str(_plain(v)) for v in value)
    if value is None or isinstance(value, str | int | float | bool):
        return "" if value is None else value
    return str(value)


def render(text: str, variables: CallVariables) -> str:
    """``text`` with the call's values filled in; raises ``PromptTemplateError`` for a bad template."""
    if not has_template(text):
        return text
    template = _compiled(text)
    try:
        return template.render(variables.namespace())
    except Exception as exc:  # the sandbox or a filter refused: the template is at fault, not the call
        raise PromptTemplateError(f"prompt template failed: {exc}") from exc


_Agent = TypeVar("_Agent")


def render_agent(agent: _Agent, variables: CallVariables | None) -> _Agent:
    """A copy of ``agent`` (an ``AgentConfig``) with its system prompt and first message filled in.

    An agent without template syntax is returned as is. A template that still fails here (it passed
    validation) is logged and its tags dropped: the call goes on, the caller never hears ``{{ }}``."""
    fields = ("system_prompt", "first_message")
    texts: dict[str, str | None] = {name: getattr(agent, name) for name in fields}
    if not any(has_template(t) for t in texts.values()):
        return agent
    values = variables or CallVariables()
    update: dict[str, str] = {}
    for name, text in texts.items():
        if text is None or not has_template(text):
            continue
        try:
            update[name] = render(text, values)
        except PromptTemplateError as exc:
            log.warning("prompt template failed; its variables are left out", field=name, error=str(exc))
            update[name] = _TAG.sub("", text)
    copy: _Agent = agent.model_copy(update=update)  # type: ignore[attr-defined]
    return copy
