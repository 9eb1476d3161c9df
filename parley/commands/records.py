"""``parley agents …``, ``parley calls …``, ``parley numbers …`` and ``parley keys …``: the store from the
command line.

They read and write the same store as the server (``PARLEY_DATABASE_URL``, or the SQLite file in
``PARLEY_DATA_DIR``), in the default organization (``PARLEY_DEFAULT_ORG``). A database URL that cannot
be used, or a database that cannot be reached, is one error line naming the setting (exit 1).

Names, descriptions, transcripts and the rest of what they print are tenant or caller text: each goes
through ``shown`` (``parley.commands.output``), so neither Rich markup nor a terminal escape sequence in
it does anything but print.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from parley.commands.output import listing, print_whole, safe_json, shown
from parley.config import get_settings
from parley.engine.agent import AgentConfig, AgentConfigError, load_agent
from parley.platform.agents import Conflict, NotFound
from parley.platform.runtime import Platform
from parley.platform.schemas import (
    AgentCreate,
    AgentUpdate,
    AnalysisOut,
    CallMessageOut,
    Direction,
    PhoneNumberCreate,
)
from parley.store.calls import CallFilters
from parley.store.db import DatabaseUnavailable
from parley.store.lifecycle import CallStatus
from parley.store.tenants import TenantRepository

agents_app = typer.Typer(help="Agents and their versions.", no_args_is_help=True)
calls_app = typer.Typer(help="Calls: list them, show one whole.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys of the default organization.", no_args_is_help=True)
numbers_app = typer.Typer(help="Phone numbers and the agents that answer them.", no_args_is_help=True)

out = Console(emoji=False)  # emoji=False: ":name:" in stored text is text, not an emoji to swap in
err = Console(stderr=True, emoji=False)
T = TypeVar("T")
MESSAGE_PREVIEW = 120
"""Characters of a call's text or email shown by ``calls show``."""

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="agent configuration (YAML)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override one setting: llm.options.model=x")]


OrgOpt = Annotated[
    str | None, typer.Option("--org", help="the organization's slug (default: the operator's own)")
]


def _run(action: Callable[[Platform, str], Awaitable[T]], org: str | None = None) -> T:
    """``action`` for organization ``org`` (a slug; the operator's own by default): the CLI runs on the
    host, with its store, and the operator may read any organization's records."""

    async def main() -> T:
        platform = await Platform.open(get_settings(), consume=False, recover=False)
        try:
            return await action(platform, await platform.org_id(org))
        finally:
            await platform.close()

    try:
        return asyncio.run(main())
    except (NotFound, Conflict, DatabaseUnavailable, AgentConfigError, ValueError) as exc:
        err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}", soft_wrap=True)  # read as text
        raise typer.Exit(1 if isinstance(exc, NotFound | Conflict | DatabaseUnavailable) else 2) from exc


def _print_json(value: BaseModel | list[Any]) -> None:
    """The data exactly, as JSON with no raw control character (``safe_json``)."""
    if isinstance(value, BaseModel):
        sys.stdout.write(safe_json(value.model_dump_json(indent=2)) + "\n")
    else:
        sys.stdout.write(safe_json(json.dumps([v.model_dump(mode="json") for v in value], indent=2)) + "\n")


def _config(
    file: Path | None, overrides: list[str] | None, base: AgentConfig | dict[str, Any] | None = None
) -> AgentConfig | None:
    """``base`` may be a stored configuration that no longer loads (``AgentOut.problem``): the
    overrides can fix it."""
    if file is None and not overrides:
        return None
    if file is not None:
        raw = load_agent(file).model_dump()
    elif isinstance(base, dict):
        raw = dict(base)
    else:
        raw = (base or AgentConfig()).model_dump()
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes key=value, got {item!r}")
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"--set {key}: {part} is not a section")
        node[leaf] = yaml.safe_load(value)
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"invalid agent configuration:\n{exc}") from exc


@agents_app.command("create")
def agents_create(
    name: Annotated[str, typer.Argument(help="a name unique in the organization")],
    file: FileOpt = None,
    overrides: SetOpt = None,
    description: Annotated[str, typer.Option(help="what the agent is for")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create an agent (version 1) from a YAML file, or the built-in defaults."""

    async def create(p: Platform, org: str) -> Any:
        config = _config(file, overrides) or AgentConfig()
        return await p.agents.create(org, AgentCreate(name=name, description=description, config=config))

    agent = _run(create)
    if as_json:
        _print_json(agent)
    else:
        out.print(f"created agent [bold]{shown(agent.name)}[/bold] ({agent.id}), version {agent.version}")


@agents_app.command("list")
def agents_list(
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50, as_json: JsonOpt = False, org: OrgOpt = None
) -> None:
    """Agents, newest first."""
    page = _run(lambda p, org_id: p.agents.page(org_id, limit), org)
    if as_json:
        _print_json(page)
        return
    rows = [
        (
            agent.id,
            shown(agent.name),
            str(agent.version),
            agent.config.llm.provider if isinstance(agent.config, AgentConfig) else "(invalid: see show)",
            _when(agent.updated_at),
        )
        for agent in page.data
    ]
    out.print(listing("Agents", ("id", "name", "version", "LLM", "updated"), rows))


@agents_app.command("show")
def agents_show(
    ref: Annotated[str, typer.Argument(help="agent id or name")],
    version: Annotated[int | None, typer.Option(help="default: the latest")] = None,
    as_json: JsonOpt = False,
    org: OrgOpt = None,
) -> None:
    """An agent's configuration (YAML), at its latest or a given version."""
    agent = _run(lambda p, org_id: p.agents.get(org_id, ref, version), org)
    if as_json:
        _print_json(agent)
        return
    out.print(
        f"[bold]{shown(agent.name)}[/bold] ({agent.id}) version {agent.version}, "
        f"updated {_when(agent.updated_at)}"
    )
    if agent.description:
        out.print(shown(agent.description, lines=True))
    if agent.problem:
        err.print(f"[yellow]this version no longer loads:[/yellow] {shown(agent.problem)}", soft_wrap=True)
    config = agent.config.model_dump(mode="json") if isinstance(agent.config, AgentConfig) else agent.config
    out.print(shown(yaml.safe_dump(config, sort_keys=False).rstrip(), lines=True))


@agents_app.command("update")
def agents_update(
    ref: Annotated[str, typer.Argument(help="agent id or name")],
    file: FileOpt = None,
    overrides: SetOpt = None,
    name: Annotated[str | None, typer.Option(help="rename")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change an agent; a changed configuration becomes a new version."""

    async def update(p: Platform, org: str) -> Any:
        base = (await p.agents.get(org, ref)).config if file is None and overrides else None
        config = _config(file, overrides, base)
        return await p.agents.update(org, ref, AgentUpdate(name=name, description=description, config=config))

    agent = _run(update)
    if as_json:
        _print_json(agent)
    else:
        out.print(f"agent [bold]{shown(agent.name)}[/bold] ({agent.id}) is at version {agent.version}")


@agents_app.command("delete")
def agents_delete(
    ref: Annotated[str, typer.Argument(help="agent id or name")], as_json: JsonOpt = False
) -> None:
    """Remove an agent (its versions stay with the calls that used them); refused, exit 1, while phone
    numbers or businesses still route to it."""
    from parley.store.agent_use import AgentInUse

    async def delete(p: Platform, org: str) -> None:
        try:
            await p.agents.delete(org, ref)
        except AgentInUse as exc:  # a conflict to resolve (re-route), not a malformed command: exit 1
            raise Conflict(str(exc)) from exc

    _run(delete)
    if as_json:
        sys.stdout.write(json.dumps({"deleted": ref}) + "\n")
    else:
        out.print(f"deleted agent {shown(ref)}")


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _day(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO date/time: {value}") from exc
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _direction(value: str | None) -> str | None:
    """A misspelt direction is an error, not an empty table."""
    allowed = get_args(Direction)
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"must be one of {', '.join(allowed)}")
    return value


@calls_app.command("list")
def calls_list(
    agent: Annotated[str | None, typer.Option(help="agent id or name")] = None,
    status: Annotated[list[CallStatus] | None, typer.Option(help="repeatable")] = None,
    direction: Annotated[
        str | None, typer.Option(help="inbound, outbound or web", callback=_direction)
    ] = None,
    since: Annotated[str | None, typer.Option(help="created at or after (ISO date/time)")] = None,
    until: Annotated[str | None, typer.Option(help="created before (ISO date/time)")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    as_json: JsonOpt = False,
    org: OrgOpt = None,
) -> None:
    """Calls, newest first."""

    async def page(p: Platform, org: str) -> Any:
        agent_id = (await p.agents.get(org, agent)).id if agent else None
        filters = CallFilters(
            agent_id=agent_id,
            statuses=[s.value for s in status or []],
            direction=direction,
            since=_day(since),
            until=_day(until),
        )
        found = await p.calls.page(org, filters, limit)
        if as_json:
            return found, {}
        return found, await _agent_names(p, org, [c.agent_id for c in found.data])

    result, names = _run(page, org)
    if as_json:
        _print_json(result)
        return
    rows = []
    for call in result.data:
        duration = f"{call.duration_s:.1f} s" if call.duration_s is not None else "-"
        who = f"{names.get(call.agent_id, call.agent_id)} v{call.agent_version}" if call.agent_id else "-"
        status_text = call.status + (f" ({call.end_reason})" if call.end_reason else "")
        row = (call.id, _when(call.created_at), call.direction, call.transport, status_text, duration, who)
        rows.append(tuple(shown(cell) for cell in row))
    columns = ("id", "created", "direction", "transport", "status", "duration", "agent")
    out.print(listing("Calls", columns, rows))


async def _agent_names(p: Platform, org: str, agent_ids: list[str | None]) -> dict[str, str]:
    """The names of these agents (unique in the organization, and taken wherever an agent is asked
    for): a listing shows the agent by name, which fits beside the listed ids. A deleted agent keeps
    its id."""
    names: dict[str, str] = {}
    for agent_id in dict.fromkeys(a for a in agent_ids if a is not None):
        try:
            names[agent_id] = (await p.agents.get(org, agent_id)).name
        except NotFound:
            continue
    return names


@calls_app.command("show")
def calls_show(
    call_id: Annotated[str, typer.Argument()],
    as_json: JsonOpt = False,
    events: Annotated[bool, typer.Option("--events", help="also print the timeline")] = False,
    org: OrgOpt = None,
) -> None:
    """A call whole: transcript, costs, latency, recording, the texts and emails its agent sent."""
    detail = _run(lambda p, org_id: p.calls.detail(org_id, call_id), org)
    if as_json:
        _print_json(detail)
        return
    out.print(
        f"[bold]{shown(detail.id)}[/bold] {shown(detail.direction)} via {shown(detail.transport)}: "
        + shown(detail.status)
        + (f" ({shown(detail.end_reason)})" if detail.end_reason else "")
        + (f", {detail.duration_s:.1f} s" if detail.duration_s is not None else "")
    )
    if detail.provider_call_id or detail.from_number or detail.to_number:
        out.print(  # caller id is the caller's to choose (a SIP From), so shown too
            f"{shown(detail.from_number or '?')} → {shown(detail.to_number or '?')}"
            + (f", Twilio call {shown(detail.provider_call_id)}" if detail.provider_call_id else "")
            + (f", answered by {shown(detail.answered_by)}" if detail.answered_by else "")
            + (f", outbound job {shown(detail.job_id)}" if detail.job_id else ""),
        )
    transcript = Table(title="Transcript")
    for column in ("at", "who", "said"):
        transcript.add_column(column, overflow="fold")
    for turn in detail.transcript:  # what a caller typed into a live session: anything at all
        transcript.add_row(
            f"{turn.start_ms / 1000:.1f} s",
            shown(turn.speaker),
            shown(turn.text + (" [interrupted]" if turn.interrupted else ""), lines=True),
        )
    out.print(transcript)
    costs = detail.costs
    for line in costs.lines:
        out.print(
            f"  {shown(line.kind):<18} {shown(line.provider):<10} {line.quantity:>10g} {shown(line.unit):<6} "
            f"${line.cost_usd}"
        )
    out.print(
        f"cost: ${costs.total_usd} (markup ${costs.markup_usd}) = {costs.total} {shown(costs.currency)}"
        + (" (provisional)" if costs.provisional else "")
    )
    for name, figures in detail.metrics.get("latency", {}).items():
        out.print(f"  {name}: p50 {figures['p50']} ms, p90 {figures['p90']} ms (n={figures['count']})")
    if detail.recording is not None:
        out.print(
            f"recording: {shown(detail.recording.status)}, {detail.recording.duration_ms / 1000:.1f} s stereo"
            + (f", {shown(detail.recording.url)}" if detail.recording.url else ""),
            soft_wrap=True,  # a URL to copy, whole
        )
    if detail.analysis is not None:
        _print_analysis(detail.analysis)
    if detail.messages:
        _print_messages(detail.messages)
    if events:
        for event in detail.events:  # json.dumps escapes every control character (ensure_ascii)
            print_whole(out, f"  {event.t_ms:>9.1f} ms  {event.type}  {json.dumps(event.data)}")


def _print_analysis(analysis: AnalysisOut) -> None:
    """Tenant and model text is printed as data (``shown``): a summary may hold square brackets, and
    the model may repeat a caller's escape sequences."""
    out.print(
        f"[bold]analysis[/bold]: {shown(analysis.status)}"
        + (f" ({shown(analysis.model)})" if analysis.model else "")
    )
    if analysis.error:
        out.print(f"  {shown(analysis.error, lines=True)}")
    if analysis.summary:
        out.print(f"  summary: {shown(analysis.summary, lines=True)}")
    if analysis.success is not None:
        verdict = "pass" if analysis.success else "fail"
        out.print(f"  success: {verdict}: {shown(analysis.success_reason or '', lines=True)}")
    if analysis.structured_data is not None:
        out.print(f"  data: {shown(json.dumps(analysis.structured_data, ensure_ascii=False))}")
    for part, problem in analysis.errors.items():
        out.print(f"  {shown(part)} failed: {shown(problem, lines=True)}")


def _print_messages(messages: list[CallMessageOut]) -> None:
    """One line per text or email the agent sent, then what it said (shortened; ``--json`` has it whole).
    The agent's words and the recipient are printed as data (``shown``)."""
    out.print(f"[bold]messages[/bold]: {len(messages)}")
    for message in messages:
        attempts = f"{message.attempts} attempt" + ("" if message.attempts == 1 else "s")
        line = f"  {shown(message.channel)} to {shown(message.to)}: {shown(message.status)}, {attempts}"
        if message.sent_at is not None:
            line += f", sent {_when(message.sent_at)}"
        if message.error:
            line += f": {shown(message.error)}"
        out.print(line)
        words = " ".join(message.body.split())
        if len(words) > MESSAGE_PREVIEW:
            words = words[: MESSAGE_PREVIEW - 1] + "…"
        out.print(
            f"    {shown(message.subject)}: {shown(words)}" if message.subject else f"    {shown(words)}"
        )


def _analysis_failure(analysis: AnalysisOut) -> str | None:
    """Why ``calls analyze`` did not get a whole analysis (None when it did)."""
    if analysis.status == "completed":
        if not analysis.errors:
            return None
        parts = "; ".join(f"{part}: {problem}" for part, problem in analysis.errors.items())
        return f"part of the analysis failed ({parts})"
    if analysis.status in ("running", "pending"):
        if analysis.error:  # this try failed: the row stays leased, then a server's worker tries again
            return f"the analysis failed and will be tried again by a server: {analysis.error}"
        return "another worker is analysing this call right now; `parley calls show` will have the outcome"
    why = analysis.error or "no reason was recorded"
    return f"the analysis {'was skipped' if analysis.status == 'skipped' else 'failed'}: {why}"


@calls_app.command("analyze")
def calls_analyze(
    call_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False, org: OrgOpt = None
) -> None:
    """Run the post-call analysis of an ended call again, here and now, with its agent's current model.
    Exits 1, saying why, unless every part of the analysis completed."""
    result = _run(lambda p, org_id: p.analysis.analyze_now(org_id, call_id), org)
    if as_json:
        _print_json(result)
    else:
        _print_analysis(result)
    failure = _analysis_failure(result)
    if failure is not None:
        err.print(f"[red]error:[/red] {shown(failure, lines=True)}", soft_wrap=True)
        raise typer.Exit(1)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="what the key is for")] = "", as_json: JsonOpt = False
) -> None:
    """Make an API key; it is printed once and never stored in the clear."""

    async def create(p: Platform, org: str) -> tuple[str, str]:
        async with p.db.session() as session:
            made = await TenantRepository(session).create_key(org, name)
            return made.row.id, made.secret

    key_id, secret = _run(create)
    if as_json:
        sys.stdout.write(json.dumps({"id": key_id, "key": secret}) + "\n")
    else:
        out.print(f"API key {key_id}: [bold]{shown(secret)}[/bold]", soft_wrap=True)
        out.print("(store it now: it cannot be shown again)")


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke an API key at once."""

    async def revoke(p: Platform, org: str) -> bool:
        async with p.db.session() as session:
            return await TenantRepository(session).revoke_key(org, key_id)

    if not _run(revoke):
        err.print(f"[red]error:[/red] no API key {shown(key_id)}")
        raise typer.Exit(1)
    out.print(f"revoked {shown(key_id)}")


@calls_app.command("dial")
def calls_dial(
    agent: Annotated[str, typer.Option(help="agent id or name")],
    to: Annotated[str, typer.Option(help="the callee, E.164 (+14155550100)")],
    from_: Annotated[
        str | None, typer.Option("--from", help="caller id (default: PARLEY_TWILIO_CALLER_ID, first number)")
    ] = None,
    priority: Annotated[int, typer.Option(min=-1000, max=1000, help="higher is dialed first")] = 0,
    key: Annotated[
        str | None,
        typer.Option(
            "--idempotency-key", help="queue at most once per key (a different call under it: exit 1)"
        ),
    ] = None,
    not_before: Annotated[str | None, typer.Option(help="not before this ISO date/time")] = None,
    window: Annotated[str | None, typer.Option(help="calling hours, callee's time (09:00-20:00)")] = None,
    time_zone: Annotated[
        str | None, typer.Option(help="IANA zone of the window (default: the callee's)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Queue an outbound phone call; a server with Twilio configured places it (and retries it)."""
    from parley.jobs.outbound import OutboundQueue
    from parley.telephony.rest import NoCarrier

    async def enqueue(p: Platform, org: str) -> Any:
        await p.agents.check_runnable(org, agent)  # BrokenAgent (a Conflict, exit 1): nothing queued
        queue = OutboundQueue(p, p.settings, NoCarrier())
        return await queue.submit(
            org,
            agent_ref=agent,
            to=to,
            from_=from_,
            priority=priority,
            idempotency_key=key,
            not_before=_day(not_before),
            window=window,
            time_zone=time_zone,
        )

    queued = _run(enqueue)
    job = queued.job
    if as_json:
        _print_json(job)
    else:
        verb = "queued" if queued.created else f"already queued with key {shown(repr(key))}:"
        out.print(
            f"{verb} outbound job [bold]{shown(job.id)}[/bold]: {shown(job.from_number)} → "
            f"{shown(job.to_number)}, {shown(job.window)} ({shown(job.time_zone)}), "
            f"due {_when(job.next_attempt_at)}"
        )


@numbers_app.command("add")
def numbers_add(
    number: Annotated[str, typer.Argument(help="E.164, e.g. +14155550100")],
    agent: Annotated[str, typer.Option(help="agent id or name that answers it")],
    label: Annotated[str, typer.Option(help="what the number is for")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Route a phone number's inbound calls to an agent (point the number's voice URL at /twilio/voice)."""
    try:
        request = PhoneNumberCreate.model_validate({"number": number, "agent": agent, "label": label})
    except ValidationError as exc:
        err.print(
            f"[red]error:[/red] {shown(str(exc.errors()[0]['loc'][0]))}: {shown(exc.errors()[0]['msg'])}"
        )
        raise typer.Exit(2) from exc
    row = _run(lambda p, org: p.phone.add_number(org, request.number, request.agent, request.label))
    if as_json:
        _print_json(row)
    else:
        out.print(
            f"added [bold]{shown(row.number)}[/bold] ({row.id}) answered by {shown(row.agent_id or '-')}"
        )


@numbers_app.command("list")
def numbers_list(as_json: JsonOpt = False) -> None:
    """The organization's phone numbers."""

    async def numbers(p: Platform, org: str) -> Any:
        found = await p.phone.numbers(org)
        if as_json:
            return found, {}
        return found, await _agent_names(p, org, [n.agent_id for n in found])

    rows, names = _run(numbers)
    if as_json:
        _print_json(rows)
        return
    listed = [
        (
            row.id,
            row.number,
            shown(names.get(row.agent_id, row.agent_id) if row.agent_id else "-"),
            shown(row.label),
            _when(row.created_at),
        )
        for row in rows
    ]
    out.print(
        listing("Phone numbers", ("id", "number", "agent", "label", "added"), listed, ids=("id", "number"))
    )


@numbers_app.command("remove")
def numbers_remove(
    ref: Annotated[str, typer.Argument(help="the number (E.164) or its id")], as_json: JsonOpt = False
) -> None:
    """Stop answering a phone number."""
    _run(lambda p, org: p.phone.remove_number(org, ref))
    if as_json:
        sys.stdout.write(json.dumps({"removed": ref}) + "\n")
    else:
        out.print(f"removed {shown(ref)}")
