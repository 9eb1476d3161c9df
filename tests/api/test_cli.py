"""``parley agents …`` and ``parley calls …`` on the same store as the server (PARLEY_DATA_DIR)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from parley.commands.agents import agents_app
from parley.commands.api_keys import keys_app
from parley.commands.calls import calls_app
from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.engine.events import Event, EventType
from parley.platform.runtime import Platform
from parley.platform.simulation import record_simulation
from parley.store.tenants import TenantRepository
from tests.api.cli import command_line, run, temporary_store
from tests.store.fixtures import run_sync
from tests.timeline.samples import events


@pytest.fixture
def parley(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[typer.Typer, Path]]:
    with temporary_store(tmp_path / "data", monkeypatch) as data:
        yield command_line(agents=agents_app, calls=calls_app, keys=keys_app), data


def test_agents_from_the_command_line(parley: tuple[typer.Typer, Path], tmp_path: Path) -> None:
    app, data = parley
    spec = tmp_path / "agent.yaml"
    spec.write_text("system_prompt: You sell bicycles.\nknowledge: [Shop opens at 10.]\n")
    made = run(app, "agents", "create", "bikes", "--file", str(spec), "--json")
    assert made.exit_code == 0, made.output
    agent = json.loads(made.stdout)
    assert agent["version"] == 1 and agent["config"]["knowledge"] == ["Shop opens at 10."]
    assert (data / "parley.db").is_file(), "the SQLite file lives in PARLEY_DATA_DIR"
    assert run(app, "agents", "create", "bikes").exit_code == 1

    updated = run(
        app,
        "agents",
        "update",
        "bikes",
        "--set",
        "llm.options.seed=7",
        "--set",
        "temperature=0.3",
        "--json",
    )
    assert updated.exit_code == 0, updated.output
    assert json.loads(updated.stdout)["version"] == 2
    shown = json.loads(run(app, "agents", "show", "bikes", "--json").stdout)
    assert shown["config"]["llm"]["options"] == {"seed": 7} and shown["config"]["temperature"] == 0.3
    first = run(app, "agents", "show", agent["id"], "--version", "1")
    assert "You sell bicycles." in first.stdout and "version 1" in first.stdout
    listed = json.loads(run(app, "agents", "list", "--json").stdout)
    assert [a["name"] for a in listed["data"]] == ["bikes"]
    assert "bikes" in run(app, "agents", "list").stdout
    bad = run(app, "agents", "update", "bikes", "--set", "temperature=-4")
    assert bad.exit_code == 2 and "invalid agent configuration" in bad.output
    assert run(app, "agents", "delete", "bikes").exit_code == 0
    missing = run(app, "agents", "show", "bikes")
    assert missing.exit_code == 1 and "no agent 'bikes'" in missing.output


def test_calls_from_the_command_line(parley: tuple[typer.Typer, Path]) -> None:
    app, _ = parley
    call_id = run_sync(record_simulation(agent=AgentConfig(name="sim"), events=events("sim-session")))
    listed = json.loads(run(app, "calls", "list", "--json", "--status", "completed", "--agent", "sim").stdout)
    assert [c["id"] for c in listed["data"]] == [call_id]
    assert json.loads(run(app, "calls", "list", "--json", "--status", "failed").stdout)["data"] == []
    assert json.loads(run(app, "calls", "list", "--json", "--since", "2999-01-01").stdout)["data"] == []
    assert json.loads(run(app, "calls", "list", "--json", "--direction", "web").stdout)["data"]
    misspelt = run(app, "calls", "list", "--direction", "sideways")
    assert misspelt.exit_code == 2 and "inbound, outbound, web" in misspelt.output, "not an empty table"
    detail = json.loads(run(app, "calls", "show", call_id, "--json").stdout)
    assert [t["text"] for t in detail["transcript"]] == ["Hello there", "Hi! How can I help?"]
    human = run(app, "calls", "show", call_id, "--events")
    assert "Hello there" in human.stdout and "transcript.final" in human.stdout
    assert run(app, "calls", "show", "call_missing").exit_code == 1
    key = json.loads(run(app, "keys", "create", "--name", "ci", "--json").stdout)
    assert key["key"].startswith("pk_")
    assert run(app, "keys", "revoke", key["id"]).exit_code == 0


def test_calls_show_prints_what_was_said_as_said(parley: tuple[typer.Typer, Path]) -> None:
    """Speech is data: square brackets in a transcript are not Rich markup to be swallowed."""
    app, _ = parley
    said = "Press [1] for [bold]sales[/bold]"
    recorded = [
        Event(e.type, e.session_id, e.t, {**e.data, "text": said})
        if e.type is EventType.TRANSCRIPT_FINAL
        else e
        for e in events("brackets")
    ]
    call_id = run_sync(record_simulation(agent=AgentConfig(name="sim"), events=recorded))
    human = run(app, "calls", "show", call_id)
    assert human.exit_code == 0
    assert said in " ".join(human.stdout.split())


def test_the_operator_reads_another_organizations_records_with_org(parley: tuple[typer.Typer, Path]) -> None:
    """The CLI acts for the operator's own organization unless ``--org`` names another (by slug)."""
    app, _ = parley

    async def other_org() -> None:
        platform = await Platform.open(get_settings(), consume=False, recover=False)
        try:
            async with platform.db.session() as session:
                await TenantRepository(session).ensure_org("acme", "Acme")
        finally:
            await platform.close()

    run_sync(other_org())
    call_id = run_sync(
        record_simulation(agent=AgentConfig(name="sim"), events=events("acme-session"), org="acme")
    )
    assert run(app, "calls", "show", call_id).exit_code == 1, "not the operator's own call"
    detail = json.loads(run(app, "calls", "show", call_id, "--json", "--org", "acme").stdout)
    assert detail["id"] == call_id
    listed = json.loads(run(app, "calls", "list", "--json", "--org", "acme").stdout)
    assert [c["id"] for c in listed["data"]] == [call_id]
    assert json.loads(run(app, "calls", "list", "--json").stdout)["data"] == []
    assert [
        a["name"] for a in json.loads(run(app, "agents", "list", "--json", "--org", "acme").stdout)["data"]
    ] == ["sim"]
    assert "sim" in run(app, "agents", "show", "sim", "--org", "acme").stdout
    unknown = run(app, "calls", "list", "--org", "nobody")
    assert unknown.exit_code == 1 and "no organization 'nobody'" in unknown.output
