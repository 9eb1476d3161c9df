"""``parley businesses …`` and ``parley leads …``: businesses and leads from the command line.

Like ``parley agents …`` they work on the store directly (``PARLEY_DATABASE_URL``, or the SQLite file in
``PARLEY_DATA_DIR``), in the default organization (``PARLEY_DEFAULT_ORG``). A lead submitted here is
matched and its notifications are written like one from the API; the server's workers send them. A
lead comes from a public form, so all it holds is printed through ``shown`` (markup and control
characters as text).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from parley.commands.output import listing, safe_json, shown
from parley.config import get_settings
from parley.platform.leads import (
    WEEKDAYS,
    BusinessIn,
    Conflict,
    InvalidInput,
    LeadIn,
    NotFound,
)
from parley.platform.runtime import Platform
from parley.store.leads import LEAD_STATUSES

businesses_app = typer.Typer(help="Businesses that take leads.", no_args_is_help=True)
leads_app = typer.Typer(
    help="Leads: submit one, list them, show one with its notifications.", no_args_is_help=True
)

out = Console(emoji=False)  # ":name:" in stored text is text, not an emoji
err = Console(stderr=True, emoji=False)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _run(action: Callable[[Platform, str], Awaitable[T]]) -> T:
    async def main() -> T:
        platform = await Platform.open(get_settings(), consume=False, recover=False)
        try:
            return await action(platform, platform.default_org_id)
        finally:
            await platform.close()

    try:
        return asyncio.run(main())
    except (NotFound, Conflict) as exc:
        err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}")
        raise typer.Exit(1) from exc
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "input"
            err.print(f"[red]error:[/red] {shown(where)}: {shown(error['msg'])}")
        raise typer.Exit(2) from exc
    except InvalidInput as exc:
        err.print(f"[red]error:[/red] {shown(str(exc), lines=True)}")
        raise typer.Exit(2) from exc


def _print_json(value: BaseModel | list[BaseModel]) -> None:
    if isinstance(value, BaseModel):
        sys.stdout.write(safe_json(value.model_dump_json(indent=2)) + "\n")
    else:
        sys.stdout.write(safe_json(json.dumps([v.model_dump(mode="json") for v in value], indent=2)) + "\n")


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


_HOURS = re.compile(r"^(?P<days>[a-z]{3}(?:[-,][a-z]{3})*)=(?P<start>\d\d:\d\d)-(?P<end>\d\d:\d\d)$")


def parse_hours(items: list[str]) -> dict[str, list[list[str]]]:
    """``mon-fri=09:00-17:00``, ``sat,sun=10:00-14:00``, ``fri=22:00-02:00`` (past midnight) into the
    stored shape; a day may be given several times for several ranges."""
    hours: dict[str, list[list[str]]] = {}
    for item in items:
        found = _HOURS.match(item.strip().lower())
        if found is None:
            raise typer.BadParameter(f"--hours takes days=HH:MM-HH:MM (mon-fri=09:00-17:00), got {item!r}")
        days: list[str] = []
        for part in found["days"].split(","):
            first, _, last = part.partition("-")
            if first not in WEEKDAYS or (last and last not in WEEKDAYS):
                raise typer.BadParameter(f"--hours: days are {', '.join(WEEKDAYS)}, got {part!r}")
            start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
            days.extend(WEEKDAYS[(start + i) % 7] for i in range((end - start) % 7 + 1))
        for day in days:
            hours.setdefault(day, []).append([found["start"], found["end"]])
    return hours


# --- businesses -----------------------------------------------------------------------------------------


@businesses_app.command("add")
def businesses_add(
    name: Annotated[str, typer.Argument(help="the business's name")],
    category: Annotated[str, typer.Option(help="what it does: plumbing, hvac-repair …")],
    email: Annotated[str, typer.Option(help="where new-lead emails go")],
    phone: Annotated[str, typer.Option(help="where new-lead texts go")],
    time_zone: Annotated[str, typer.Option("--time-zone", help="IANA, e.g. America/New_York")],
    lat: Annotated[float | None, typer.Option(help="latitude of the service area's centre")] = None,
    lon: Annotated[float | None, typer.Option(help="longitude of the service area's centre")] = None,
    radius_km: Annotated[float | None, typer.Option("--radius-km", help="served around the point")] = None,
    postal_code: Annotated[list[str] | None, typer.Option("--postal-code", help="served; repeat")] = None,
    hours: Annotated[
        list[str] | None, typer.Option("--hours", help="mon-fri=09:00-17:00; repeat; none: always open")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="the agent that calls leads back (id or name)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Add a business (its service area: --lat/--lon/--radius-km, or --postal-code)."""
    opening = parse_hours(hours or [])

    async def add(p: Platform, org: str) -> Any:
        business = BusinessIn(
            name=name,
            category=category,
            latitude=lat,
            longitude=lon,
            radius_km=radius_km,
            postal_codes=postal_code or [],
            hours=opening,
            time_zone=time_zone,
            notify_email=email,
            notify_phone=phone,
            agent_id=agent,
        )
        return await p.leads.create_business(org, business)

    made = _run(add)
    if as_json:
        _print_json(made)
    else:
        out.print(
            f"added business [bold]{shown(made.name)}[/bold] ({made.id}), category {shown(made.category)}"
        )


@businesses_app.command("list")
def businesses_list(
    category: Annotated[str | None, typer.Option(help="only this category")] = None,
    all_: Annotated[bool, typer.Option("--all", help="deactivated ones too")] = False,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Businesses, newest first (active ones unless --all)."""
    page = _run(
        lambda p, org: p.leads.businesses(org, category=category, active=None if all_ else True, limit=limit)
    )
    if as_json:
        _print_json(page)
        return
    rows = []
    for b in page.data:
        area = f"{b.radius_km:g} km" if b.radius_km is not None else ""
        if b.postal_codes:
            area = ", ".join(filter(None, [area, f"{len(b.postal_codes)} postal codes"]))
        rows.append(
            (b.id, shown(b.name), shown(b.category), area, shown(b.time_zone), "yes" if b.active else "no")
        )
    out.print(listing("Businesses", ("id", "name", "category", "area", "time zone", "active"), rows))


@businesses_app.command("show")
def businesses_show(business_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """A business whole."""
    b = _run(lambda p, org: p.leads.business(org, business_id))
    if as_json:
        _print_json(b)
        return
    out.print(
        f"[bold]{shown(b.name)}[/bold] ({b.id}) {shown(b.category)}, {'active' if b.active else 'inactive'}"
    )
    if b.radius_km is not None:
        out.print(f"area: {b.radius_km:g} km around {b.latitude}, {b.longitude}")
    if b.postal_codes:
        out.print(f"postal codes: {shown(', '.join(b.postal_codes))}")
    opening = "; ".join(
        f"{day} {', '.join(f'{s}-{e}' for s, e in b.hours[day])}" for day in WEEKDAYS if day in b.hours
    )
    out.print(f"hours ({shown(b.time_zone)}): {shown(opening) or 'always open'}")
    out.print(f"notify: {shown(b.notify_email)}, {shown(b.notify_phone)}; agent: {shown(b.agent_id or '-')}")


@businesses_app.command("deactivate")
def businesses_deactivate(business_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """Stop sending a business new leads (its past leads stay)."""
    b = _run(lambda p, org: p.leads.deactivate_business(org, business_id))
    if as_json:
        _print_json(b)
    else:
        out.print(f"deactivated business {shown(b.name)} ({b.id})")


# --- leads ----------------------------------------------------------------------------------------------


@leads_app.command("submit")
def leads_submit(
    name: Annotated[str, typer.Option(help="who asks")],
    phone: Annotated[str, typer.Option(help="their phone number")],
    category: Annotated[str, typer.Option(help="what they need: plumbing …")],
    email: Annotated[str | None, typer.Option(help="their email")] = None,
    lat: Annotated[float | None, typer.Option()] = None,
    lon: Annotated[float | None, typer.Option()] = None,
    postal_code: Annotated[str | None, typer.Option("--postal-code")] = None,
    description: Annotated[str, typer.Option(help="what it is about")] = "",
    consent: Annotated[
        bool, typer.Option("--consent/--no-consent", help="whether they agreed to be called back")
    ] = False,
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="the same key again: the same lead")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit a lead: matched, stored and its notifications queued, as from the API."""

    async def submit(p: Platform, org: str) -> Any:
        lead = LeadIn(
            name=name,
            phone=phone,
            email=email,
            category=category,
            latitude=lat,
            longitude=lon,
            postal_code=postal_code,
            description=description,
            consent_to_call=consent,
        )
        return await p.leads.submit(org, lead, source="cli", idempotency_key=idempotency_key)

    result = _run(submit)
    if as_json:
        _print_json(result.lead)
        return
    lead = result.lead
    verb = "submitted" if result.created else "already had"
    out.print(f"{verb} lead {lead.id}: {shown(lead.status)}, {len(lead.matches)} business(es)")


@leads_app.command("list")
def leads_list(
    status: Annotated[str | None, typer.Option(help=", ".join(LEAD_STATUSES))] = None,
    business: Annotated[str | None, typer.Option(help="only leads matched to this business id")] = None,
    limit: Annotated[int, typer.Option(min=1, max=200)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """Leads, newest first."""
    if status is not None and status not in LEAD_STATUSES:
        raise typer.BadParameter(f"{status!r} is none of {', '.join(LEAD_STATUSES)}", param_hint="--status")
    page = _run(lambda p, org: p.leads.leads(org, status=status, business_id=business, limit=limit))
    if as_json:
        _print_json(page)
        return
    rows = [
        (
            lead.id,
            _when(lead.created_at),
            shown(lead.name),
            shown(lead.category),
            shown(lead.status),
            str(len(lead.matches)),
            "yes" if lead.consent_to_call else "no",
        )
        for lead in page.data
    ]
    columns = ("id", "received", "name", "category", "status", "businesses", "consent")
    out.print(listing("Leads", columns, rows))


@leads_app.command("show")
def leads_show(lead_id: Annotated[str, typer.Argument()], as_json: JsonOpt = False) -> None:
    """A lead, the businesses it went to and its notifications."""

    async def show(p: Platform, org: str) -> Any:
        return await p.leads.lead(org, lead_id), await p.leads.notifications(org, lead_id)

    lead, notifications = _run(show)
    if as_json:
        payload = lead.model_dump(mode="json") | {
            "notifications": [n.model_dump(mode="json") for n in notifications]
        }
        sys.stdout.write(safe_json(json.dumps(payload, indent=2)) + "\n")
        return
    out.print(f"[bold]{shown(lead.name)}[/bold] ({lead.id}) {shown(lead.category)}: {shown(lead.status)}")
    out.print(
        f"phone {shown(lead.phone)}, email {shown(lead.email or '-')}, "
        f"consent to call: {lead.consent_to_call}"
    )
    if lead.description:
        out.print(shown(lead.description, lines=True))
    for m in lead.matches:
        distance = f"{m.distance_km:g} km" if m.distance_km is not None else "by postal code"
        out.print(f"  → {shown(m.business_id)} ({distance}{'' if m.open_at_submit else ', was closed'})")
    table = Table(title="Notifications")
    for column in ("kind", "channel", "to", "status", "attempts", "sent", "last error"):
        table.add_column(column)
    for n in notifications:  # the last error says why a notice is still pending (the SMTP server is down)
        table.add_row(
            shown(n.kind),
            shown(n.channel),
            shown(n.recipient),
            shown(n.status),
            str(n.attempts),
            _when(n.sent_at),
            shown(n.last_error or "") if n.status != "sent" else "",
        )
    out.print(table)
