"""``parley keys create|revoke``: the default organization's API keys, from the command line."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from parley.commands.output import shown
from parley.commands.records import JsonOpt, _run, err, out
from parley.platform.runtime import Platform
from parley.store.tenants import TenantRepository

keys_app = typer.Typer(help="API keys of the default organization.", no_args_is_help=True)


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
