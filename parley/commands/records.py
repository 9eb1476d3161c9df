"""What the commands over the store's records share: one trip to the store, the common options, the
consoles and how records print.

``parley agents …``, ``parley calls …``, ``parley numbers …``, ``parley keys …`` and ``parley agents docs …``
read and write the same store as the server (``PARLEY_DATABASE_URL``, or the SQLite file in
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
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console

from parley.commands.output import safe_json, shown
from parley.config import get_settings
from parley.engine.agent import AgentConfigError
from parley.platform.agents import Conflict, NotFound
from parley.platform.runtime import Platform
from parley.store.db import DatabaseUnavailable

out = Console(emoji=False)  # emoji=False: ":name:" in stored text is text, not an emoji to swap in
err = Console(stderr=True, emoji=False)
T = TypeVar("T")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]

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


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


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
