"""``parley numbers add|list|remove``: which agent answers each of the organization's phone numbers
(``parley numbers assign|unassign``, the operator's, are in ``parley.commands.numbers``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from parley.commands.output import listing, shown
from parley.commands.records import JsonOpt, _agent_names, _print_json, _run, _when, err, out
from parley.platform.runtime import Platform
from parley.platform.schemas import PhoneNumberCreate

numbers_app = typer.Typer(help="Phone numbers and the agents that answer them.", no_args_is_help=True)


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
