"""``parley calls list|show|analyze|dial``: calls on the books, one printed whole, its analysis run again,
an outbound call queued (``parley.commands.records`` says which store and organization)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, get_args

import typer
from rich.table import Table

from parley.commands.output import listing, print_whole, shown
from parley.commands.records import JsonOpt, OrgOpt, _agent_names, _print_json, _run, _when, err, out
from parley.platform.runtime import Platform
from parley.platform.schemas import AnalysisOut, CallMessageOut, Direction
from parley.store.calls import CallFilters
from parley.store.lifecycle import CallStatus

calls_app = typer.Typer(help="Calls: list them, show one whole.", no_args_is_help=True)
MESSAGE_PREVIEW = 120
"""Characters of a call's text or email shown by ``calls show``."""


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
