"""``parley numbers assign`` and ``parley numbers unassign``: the operator gives phone numbers to
organizations and takes them back.

One Twilio account may carry every organization, and an inbound call goes to whoever holds its ``To``
number, so an organization's API key never takes a number for itself: it routes the numbers these
commands gave it (``POST``/``PATCH /v1/phone-numbers``). They run on the host, with its store, as the rest
of ``parley numbers``; unlike the rest they name the organization (``--org``, a slug), since the operator
acts for every one of them.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError
from rich.console import Console

from parley.commands.output import shown
from parley.config import get_settings
from parley.inputs import E164
from parley.platform.agents import Conflict, NotFound
from parley.platform.runtime import Platform
from parley.platform.schemas import PhoneNumberOut

out = Console(emoji=False)
err = Console(stderr=True, emoji=False)
T = TypeVar("T")

_E164: TypeAdapter[str] = TypeAdapter(E164)


def _number(value: str, what: str = "number") -> str:
    """``value`` in E.164, or exit 2 saying why (as ``parley numbers add`` does)."""
    try:
        return _E164.validate_python(value)
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {what}: {shown(exc.errors()[0]['msg'])}")
        raise typer.Exit(2) from exc


def _run(action: Callable[[Platform], Awaitable[T]]) -> T:
    async def main() -> T:
        platform = await Platform.open(get_settings(), consume=False, recover=False)
        try:
            return await action(platform)
        finally:
            await platform.close()

    try:
        return asyncio.run(main())
    except (NotFound, Conflict) as exc:
        err.print(f"[red]error:[/red] {shown(str(exc))}", soft_wrap=True)
        raise typer.Exit(1) from exc


def _shared_caller_id(platform: Platform) -> str | None:
    """``PARLEY_TWILIO_CALLER_ID`` in E.164; None when unset, or not a number (then no number is it)."""
    configured = platform.settings.twilio_caller_id
    if not configured:
        return None
    try:
        return _E164.validate_python(configured)
    except ValidationError:  # the outbound queue reports a broken setting when it is used
        return None


def numbers_assign(
    number: Annotated[str, typer.Argument(help="E.164, e.g. +14155550100 (bought in the Twilio account)")],
    org: Annotated[str, typer.Option("--org", help="the organization's slug")],
    agent: Annotated[
        str | None,
        typer.Option(help="agent id or name of that organization that answers it (default: none yet)"),
    ] = None,
    label: Annotated[str | None, typer.Option(help="what the number is for")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Give a phone number to an organization: the operator's act, its API keys cannot take one.

    Assigned again to the same organization, the number takes the agent or label given."""
    e164 = _number(number)

    async def assign(platform: Platform) -> PhoneNumberOut:
        org_id = await platform.org_id(org)
        if org_id != platform.default_org_id and e164 == _shared_caller_id(platform):
            # Every organization's calls may show the configured caller id: given to one, the others'
            # callees would call back into its agent.
            raise Conflict(
                f"{e164} is PARLEY_TWILIO_CALLER_ID, which every organization may call from: it stays the "
                f"operator organization's (set another caller id to give it to {org})"
            )
        return await platform.phone.assign_number(org_id, e164, agent, label)

    row = _run(assign)
    if as_json:
        sys.stdout.write(row.model_dump_json(indent=2) + "\n")
    elif row.agent_id is None:
        out.print(f"assigned [bold]{row.number}[/bold] ({row.id}) to {shown(org)}; no agent answers it yet")
    else:
        out.print(
            f"assigned [bold]{row.number}[/bold] ({row.id}) to {shown(org)}, answered by {row.agent_id}"
        )


def numbers_unassign(
    number: Annotated[str, typer.Argument(help="E.164, e.g. +14155550100")],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Take a phone number back from whichever organization has it (its calls stay on the books)."""
    e164 = _number(number)
    slug = _run(lambda platform: platform.phone.unassign_number(e164))
    if as_json:
        sys.stdout.write(json.dumps({"unassigned": e164, "org": slug}) + "\n")
    else:
        out.print(f"unassigned [bold]{e164}[/bold] from {shown(slug)}")
