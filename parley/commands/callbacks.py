"""``parley leads callback LEAD_ID`` and ``parley businesses page-link BUSINESS_ID``.

Like the other record commands they work on the store directly, in the default organization. A
call-back asked for here is written to the outbound queue; a server with Twilio configured places it.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console

from parley.commands.output import safe_json, shown
from parley.config import get_settings
from parley.platform.agents import Conflict, NotFound
from parley.platform.callbacks import CallbackOut
from parley.platform.links import business_path
from parley.platform.runtime import Platform

out = Console(emoji=False)  # ":name:" in stored text is text, not an emoji
err = Console(stderr=True, emoji=False)
T = TypeVar("T")


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


def leads_callback(
    lead_id: Annotated[str, typer.Argument(help="the lead to call back")],
    business: Annotated[
        str | None, typer.Option("--business", help="for this business (default: the nearest with an agent)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Have a business's agent call a lead back (only a lead that agreed to be called)."""
    from parley.jobs.outbound import OutboundQueue
    from parley.telephony.rest import NoCarrier

    async def ask(platform: Platform, org_id: str) -> CallbackOut:
        queue = OutboundQueue(platform, platform.settings, NoCarrier())
        return await platform.callbacks.request(
            queue, org_id, lead_id, business_id=business, requested_by="cli"
        )

    made = _run(ask)
    if as_json:
        sys.stdout.write(safe_json(made.model_dump_json(indent=2)) + "\n")
    elif made.created:
        out.print(
            f"call-back of {shown(made.lead_id)} queued for business {shown(made.business_id)}: "
            f"outbound job [bold]{shown(made.job_id)}[/bold] (a server with Twilio places it)"
        )
    else:
        out.print(
            f"a call-back of {shown(made.lead_id)} was asked for already: outbound job "
            f"[bold]{shown(made.job_id)}[/bold], lead {shown(made.status)}"
        )


def businesses_page_link(
    business_id: Annotated[str, typer.Argument(help="the business")],
    days: Annotated[int, typer.Option("--days", min=1, max=90, help="how long the link works")] = 7,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """A signed link to the business's own leads page (send it to the business)."""
    ttl = timedelta(days=days)
    made_at = datetime.now(UTC)

    async def link(platform: Platform, org_id: str) -> str:
        business = await platform.leads.business(org_id, business_id)
        return business_path(platform.settings, business.id, ttl=ttl, now=made_at.timestamp())

    path = _run(link)
    base = (get_settings().public_url or "").rstrip("/")
    url = base + path
    expires = (made_at + ttl).replace(microsecond=0)
    if as_json:
        sys.stdout.write(json.dumps({"url": url, "expires_at": expires.isoformat()}) + "\n")
        return
    out.print(url, soft_wrap=True, highlight=False, markup=False)
    if not base:
        err.print("PARLEY_PUBLIC_URL is not set: put the server's address in front of this path")
    err.print(f"works until {expires:%Y-%m-%d %H:%M} UTC")
