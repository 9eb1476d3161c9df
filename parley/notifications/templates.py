"""What a notification says: Jinja2 templates, the shipped defaults and each organization's own.

Every kind (``new_lead``, ``unmatched_lead``, ``callback_outcome``) has four parts: ``subject``, ``html``
and ``txt`` (one multipart email) and ``sms`` (a text of at most 320 characters). The defaults live in
``templates/``; an organization may replace any part (``notification_templates``, the API
``/v1/notification-templates/{name}``).

An organization's template is data written by a tenant, so it runs in Jinja's sandbox (no ``__class__``
and friends), with HTML escaped, every undefined name an error, and only a small language: output,
``if``, one level of ``for``, a list of harmless filters. Assignments, calls, macros, includes and the
``*``/``**``/``%`` operators are refused when it is saved, so no template can build an unbounded string
or loop for long; output is capped besides. A template is checked when it is saved, by rendering it with
sample data, so a broken one is refused then (``TemplateInvalid``), not at send time; should one still fail
for some lead, the default is used and the failure logged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog
from jinja2 import StrictUndefined, TemplateError, nodes
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import delete, select

from parley.store.db import Database
from parley.store.models import NotificationTemplate
from parley.store.queries import upsert
from parley.store.types import utcnow

log = structlog.get_logger("parley.notifications")

KINDS = ("new_lead", "unmatched_lead", "callback_outcome")
PARTS = ("subject", "html", "txt", "sms")
NAMES = tuple(f"{kind}.{part}" for kind in KINDS for part in PARTS)
"""Every template there is; the API answers 404 for any other name."""

MAX_TEMPLATE_CHARS = 20_000
MAX_RENDERED_CHARS = 100_000
"""A template rendering more than this (a loop over a long field) is an error, not an email."""
SMS_MAX_CHARS = 320
SUBJECT_MAX_CHARS = 200
MAX_FOR_DEPTH = 1

SAFE_FILTERS = frozenset(
    {
        "abs",
        "capitalize",
        "count",
        "d",
        "default",
        "e",
        "escape",
        "first",
        "float",
        "int",
        "last",
        "length",
        "lower",
        "round",
        "string",
        "striptags",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "wordcount",
    }
)
"""Filters whose output is no longer than their input (give or take a few characters). Not ``safe``:
lead fields come from the public, and would otherwise put their own HTML in a business's mail."""
SAFE_TESTS = frozenset(
    {
        "defined",
        "undefined",
        "none",
        "string",
        "number",
        "true",
        "false",
        "odd",
        "even",
        "eq",
        "ne",
        "lt",
        "le",
        "gt",
        "ge",
        "in",
        "sameas",
    }
)
_ALLOWED_NODES: tuple[type[nodes.Node], ...] = (
    nodes.Template,
    nodes.Output,
    nodes.TemplateData,
    nodes.Const,
    nodes.Name,
    nodes.Getattr,
    nodes.Getitem,
    nodes.Slice,
    nodes.If,
    nodes.For,
    nodes.Filter,
    nodes.Test,
    nodes.Compare,
    nodes.Operand,
    nodes.And,
    nodes.Or,
    nodes.Not,
    nodes.Neg,
    nodes.Pos,
    nodes.CondExpr,
    nodes.Concat,
    nodes.Add,
    nodes.Sub,
    nodes.Div,
    nodes.FloorDiv,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.Keyword,
)


class TemplateInvalid(ValueError):
    """A template that cannot be used: bad syntax, a construct that is not allowed, or it fails (or
    grows too long) when rendered with sample data. The message says where and why."""


class UnknownTemplate(KeyError):
    """A template name that is not one of ``NAMES``."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """One notification's words: the email's subject, HTML and text, or an SMS body."""

    subject: str
    html: str
    text: str
    sms: str


def _environment(*, html: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        autoescape=html, undefined=StrictUndefined, trim_blocks=False, keep_trailing_newline=False
    )


_HTML = _environment(html=True)
_TEXT = _environment(html=False)


def _env(name: str) -> SandboxedEnvironment:
    return _HTML if name.endswith(".html") else _TEXT


def default_body(name: str) -> str:
    """The shipped template ``name`` (``new_lead.html`` …)."""
    if name not in NAMES:
        raise UnknownTemplate(name)
    return resources.files("parley.notifications").joinpath("templates", name).read_text("utf-8")


# --- checking a tenant's template ----------------------------------------------------------------------


def _refuse(node: nodes.Node, why: str) -> TemplateInvalid:
    return TemplateInvalid(f"line {node.lineno}: {why}")


def _check(node: nodes.Node, for_depth: int) -> None:
    if not isinstance(node, _ALLOWED_NODES):
        raise _refuse(node, f"{type(node).__name__.lower()} is not allowed in notification templates")
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        raise _refuse(node, f"attribute {node.attr!r} is not allowed")
    if (
        isinstance(node, nodes.Getitem)
        and isinstance(node.arg, nodes.Const)
        and str(node.arg.value).startswith("_")
    ):
        raise _refuse(node, f"item {node.arg.value!r} is not allowed")
    if isinstance(node, nodes.Filter) and node.name not in SAFE_FILTERS:
        raise _refuse(
            node, f"filter {node.name!r} is not allowed (allowed: {', '.join(sorted(SAFE_FILTERS))})"
        )
    if isinstance(node, nodes.Test) and node.name not in SAFE_TESTS:
        raise _refuse(node, f"test {node.name!r} is not allowed")
    if isinstance(node, nodes.Filter | nodes.Test) and (node.dyn_args or node.dyn_kwargs):
        raise _refuse(node, "*args and **kwargs are not allowed")
    if isinstance(node, nodes.Name) and node.ctx != "load" and for_depth == 0:
        raise _refuse(node, "assignments are not allowed")
    if isinstance(node, nodes.For):
        if node.recursive:
            raise _refuse(node, "recursive loops are not allowed")
        if for_depth >= MAX_FOR_DEPTH:
            raise _refuse(node, "loops inside loops are not allowed")
        for child in node.iter_child_nodes():
            _check(child, for_depth + 1)
        return
    for child in node.iter_child_nodes():
        _check(child, for_depth)


def _parse(name: str, body: str) -> Any:
    if len(body) > MAX_TEMPLATE_CHARS:
        raise TemplateInvalid(f"a template is at most {MAX_TEMPLATE_CHARS} characters")
    env = _env(name)
    try:
        tree = env.parse(body)
    except TemplateError as exc:
        raise TemplateInvalid(f"line {getattr(exc, 'lineno', '?')}: {exc.message or exc}") from exc
    _check(tree, 0)
    return env.from_string(tree)


def _render(template: Any, context: Mapping[str, Any]) -> str:
    """Render with the output capped (rendering stops once the cap is passed)."""
    out: list[str] = []
    size = 0
    try:
        for chunk in template.generate(**context):
            size += len(chunk)
            if size > MAX_RENDERED_CHARS:
                raise TemplateInvalid(f"renders more than {MAX_RENDERED_CHARS} characters")
            out.append(chunk)
    except TemplateInvalid:
        raise
    except TemplateError as exc:  # undefined names, sandbox refusals, type errors in expressions
        raise TemplateInvalid(f"{type(exc).__name__}: {exc.message or exc}") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateInvalid(f"{type(exc).__name__}: {exc}") from exc
    return "".join(out)


def validate(name: str, body: str) -> None:
    """Refuse (``TemplateInvalid``) a template an organization wants to save: it must parse, use only
    what is allowed, and render within bounds with sample data of its kind."""
    if name not in NAMES:
        raise UnknownTemplate(name)
    kind, part = name.split(".")
    rendered = _render(_parse(name, body), sample_context(kind)).strip()
    if part == "sms" and len(rendered) > SMS_MAX_CHARS:
        raise TemplateInvalid(
            f"renders {len(rendered)} characters with sample data; a text is at most {SMS_MAX_CHARS}"
        )


def _finish(part: str, text: str) -> str:
    """A subject is one line; a text is clipped to what one notification may cost."""
    if part == "subject":
        line = " ".join(text.split())
        return line if len(line) <= SUBJECT_MAX_CHARS else line[: SUBJECT_MAX_CHARS - 1] + "…"
    if part == "sms":
        text = text.strip()
        return text if len(text) <= SMS_MAX_CHARS else text[: SMS_MAX_CHARS - 1] + "…"
    return text


# --- what a template sees ------------------------------------------------------------------------------


def _when(moment: datetime, zone: str | None = None) -> str:
    """In the lead's own time (the business reading it is mostly there), else UTC; named either way."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        local = moment.astimezone(ZoneInfo(zone)) if zone else moment.astimezone(UTC)
    except (ZoneInfoNotFoundError, ValueError):
        local = moment.astimezone(UTC)
    return local.strftime("%Y-%m-%d %H:%M %Z")


def lead_context(lead: Any) -> dict[str, Any]:
    """A lead as templates see it (plain values, never the row)."""
    return {
        "id": lead.id,
        "name": lead.name,
        "phone": lead.phone,
        "email": lead.email,
        "category": lead.category,
        "postal_code": lead.postal_code,
        "description": lead.description or "",
        "consent_to_call": bool(lead.consent_to_call),
        "source": lead.source,
        "status": lead.status,
        "time_zone": lead.time_zone,
        "received": _when(lead.created_at, lead.time_zone),
    }


def business_context(business: Any) -> dict[str, Any]:
    return {
        "id": business.id,
        "name": business.name,
        "category": business.category,
        "email": business.notify_email,
        "phone": business.notify_phone,
    }


def sample_context(kind: str) -> dict[str, Any]:
    """Data shaped as a real notification of ``kind`` has it; a template is test-rendered with it."""
    lead = {
        "id": "lead_0123456789abcdef0123",
        "name": "Ada Lovelace",
        "phone": "+14155550100",
        "email": "ada@example.com",
        "category": "plumbing",
        "postal_code": "94107",
        "description": "The kitchen sink is leaking under the cabinet. Evenings are best.",
        "consent_to_call": True,
        "source": "form",
        "status": "matched",
        "time_zone": "America/Los_Angeles",
        "received": "2026-12-09 06:05 PST",
    }
    business = {
        "id": "biz_0123456789abcdef0123",
        "name": "Bay Plumbing Co.",
        "category": "plumbing",
        "email": "office@bayplumbing.example",
        "phone": "+14155550123",
    }
    context: dict[str, Any] = {
        "lead": lead,
        "business": None if kind == "unmatched_lead" else business,
        "organization": {"name": "Example Leads"},
        "callback_url": "https://parley.example/leads/lead_0123456789abcdef0123/callback?token=sample",
        "outcome": None,
    }
    if kind == "callback_outcome":
        context["outcome"] = {  # as the call-back writes it (platform/callbacks.py)
            "result": "answered",
            "status": "answered",
            "call_id": "call_0123456789abcdef0123",
            "duration_s": 74.2,
            "summary": "Ada wants a plumber on Thursday evening; she confirmed the address.",
            "transcript": [
                {"speaker": "agent", "text": "Hello Ada, Bay Plumbing asked me to call about your sink."},
                {"speaker": "user", "text": "Yes, it leaks. Thursday evening would be best."},
            ],
        }
    return context


# --- rendering, with an organization's own templates ---------------------------------------------------


def render(
    kind: str, overrides: Mapping[str, str], context: Mapping[str, Any], **log_context: Any
) -> Rendered:
    """All four parts of ``kind``: an organization's own template where it has one (``overrides`` by
    name), else the default. An own template that fails here is replaced by the default, and logged."""
    parts: dict[str, str] = {}
    for part in PARTS:
        name = f"{kind}.{part}"
        own = overrides.get(name)
        text: str | None = None
        if own is not None:
            try:
                text = _render(_parse(name, own), context)
            except TemplateInvalid as exc:
                log.warning(
                    "an organization's template failed; the default is used",
                    template=name,
                    error=str(exc),
                    **log_context,
                )
        if text is None:
            text = _render(_default(name), context)
        parts[part] = _finish(part, text)
    return Rendered(subject=parts["subject"], html=parts["html"], text=parts["txt"], sms=parts["sms"])


_DEFAULTS: dict[str, Any] = {}


def _default(name: str) -> Any:
    template = _DEFAULTS.get(name)
    if template is None:
        template = _DEFAULTS[name] = _env(name).from_string(default_body(name))
    return template


# --- an organization's templates in the store ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateView:
    name: str
    body: str
    custom: bool
    """True where the organization replaced the default."""
    updated_at: datetime | None


class TemplateStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def overrides(self, org_id: str, kind: str) -> dict[str, str]:
        """The organization's own templates of ``kind``, by name."""
        async with self.db.session() as session:
            rows = await session.scalars(
                select(NotificationTemplate).where(
                    NotificationTemplate.org_id == org_id,
                    NotificationTemplate.name.in_([f"{kind}.{part}" for part in PARTS]),
                )
            )
            return {row.name: row.body for row in rows}

    async def all(self, org_id: str) -> list[TemplateView]:
        async with self.db.session() as session:
            rows = {
                row.name: row
                for row in await session.scalars(
                    select(NotificationTemplate).where(NotificationTemplate.org_id == org_id)
                )
            }
        return list(self._views(rows))

    def _views(self, rows: Mapping[str, NotificationTemplate]) -> Iterator[TemplateView]:
        for name in NAMES:
            row = rows.get(name)
            if row is None:
                yield TemplateView(name, default_body(name), False, None)
            else:
                yield TemplateView(name, row.body, True, row.updated_at)

    async def get(self, org_id: str, name: str) -> TemplateView:
        if name not in NAMES:
            raise UnknownTemplate(name)
        async with self.db.session() as session:
            row = await session.get(NotificationTemplate, (org_id, name))
        if row is None:
            return TemplateView(name, default_body(name), False, None)
        return TemplateView(name, row.body, True, row.updated_at)

    async def put(self, org_id: str, name: str, body: str) -> TemplateView:
        """Save an organization's template, once it checked out (``TemplateInvalid`` otherwise)."""
        validate(name, body)
        now = utcnow()
        async with self.db.session() as session:
            await upsert(
                session,
                NotificationTemplate,
                [{"org_id": org_id, "name": name, "body": body, "updated_at": now}],
                ["org_id", "name"],
            )
        return TemplateView(name, body, True, now)

    async def delete(self, org_id: str, name: str) -> bool:
        """Go back to the default; False when the organization had no template of that name."""
        if name not in NAMES:
            raise UnknownTemplate(name)
        async with self.db.session() as session:
            result = await session.execute(
                delete(NotificationTemplate).where(
                    NotificationTemplate.org_id == org_id, NotificationTemplate.name == name
                )
            )
        return bool(getattr(result, "rowcount", 0))
