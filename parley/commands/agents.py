"""``parley agents create|list|show|update|delete``: agents and their versions, from the command line
(``parley.commands.records`` says which store and organization)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError

from parley.commands.output import listing, shown
from parley.commands.records import JsonOpt, OrgOpt, _print_json, _run, _when, err, out
from parley.engine.agent import AgentConfig, load_agent
from parley.platform.agents import Conflict
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate, AgentUpdate

agents_app = typer.Typer(help="Agents and their versions.", no_args_is_help=True)

FileOpt = Annotated[Path | None, typer.Option("--file", "-f", help="agent configuration (YAML)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override one setting: llm.options.model=x")]


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
