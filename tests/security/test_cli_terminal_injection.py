"""Threat: tenant or caller text drives the operator's terminal, or disguises itself, through the CLI.

An anonymous caller on a public agent types escape sequences into a live session (clear the screen,
recolour, write the clipboard with OSC 52) and ``parley calls show`` used to print them raw; an agent
named with an escape sequence did the same in ``parley agents list``; Rich markup in a description made
``parley agents show`` crash (MarkupError) and a name like ``[red]x[/red]`` printed as ``x``. Now every
stored text prints inert (control characters as visible escapes, markup as written), ``--json`` keeps
the exact data without raw control characters, and the API refuses control characters in names and
text with a 422 naming the field. Runs the real ``parley`` command line on a SQLite store.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import TypeAdapter, ValidationError
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from parley.cli import app
from parley.config import Settings, get_settings
from parley.engine.agent import AgentConfig
from parley.engine.events import Event, EventType
from parley.inputs import PlainName
from parley.platform.runtime import Platform
from parley.platform.simulation import record_simulation
from parley.providers.llm.base import LanguageModel
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.store.agents import AgentRepository
from tests.analysis.test_cli_analyze_outcome import ANALYSIS
from tests.api.cli import temporary_store
from tests.api.conftest import api_client
from tests.store.fixtures import run_sync
from tests.timeline.samples import events

KEY = "pk_cli-terminal-injection-key"
CALLER_TEXT = "hi \x1b]52;c;ZWNobyBwd25lZA==\x07 \x1b[2J\x1b[31mRED \x9b2J\x85 [bold]loud[/bold]"
"""What an anonymous caller typed: OSC 52 (clipboard), clear screen, red, a C1 CSI and NEL, markup."""
DESCRIPTION = "Hello [/bold] … [link=https://evil.example]click[/link]"
RAW_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
"""What must never reach the terminal (line feed and tab are how text is laid out)."""


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    # the CLI logs to stderr; unconfigured structlog would print to stdout
    with temporary_store(tmp_path / "data", monkeypatch) as data, capture_logs():
        yield data


def parley(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})


def inert(result: Result) -> str:
    """Everything the command printed (stdout and stderr), asserted free of raw control characters."""
    printed = result.stdout + result.stderr
    found = RAW_CONTROL.search(printed)
    assert found is None, f"{found.group()!r} reached the terminal: {printed!r}"
    return printed


def flat(text: str) -> str:
    """Table cells wrap and pad: compare with runs of whitespace as one space."""
    return " ".join(text.split())


async def _open() -> Platform:
    return await Platform.open(get_settings(), consume=False, recover=False)


async def _store_agent_as_before(name: str, description: str) -> str:
    """An agent written straight to the store, as one saved before the API refused control
    characters (or by any path that skips it): the CLI must still print it inert."""
    platform = await _open()
    try:
        async with platform.db.session() as session:
            config = AgentConfig(name="legacy").model_dump(mode="json")
            made = await AgentRepository(session).create(platform.default_org_id, name, config, description)
            return made.id
    finally:
        await platform.close()


async def _rename_in_store(old: str, new: str) -> None:
    platform = await _open()
    try:
        async with platform.db.session() as session:
            agent = await AgentRepository(session).by_name(platform.default_org_id, old)
            assert agent is not None
            agent.name = new
    finally:
        await platform.close()


def _call_where_the_caller_typed(text: str, session: str) -> str:
    recorded = [
        Event(e.type, e.session_id, e.t, {**e.data, "text": text, "source": "text"})
        if e.type is EventType.TRANSCRIPT_FINAL
        else e
        for e in events(session)
    ]
    return run_sync(record_simulation(agent=AgentConfig(name="public"), events=recorded))


def test_a_callers_escape_sequences_print_inert_in_calls_show(store: Path) -> None:
    call_id = _call_where_the_caller_typed(CALLER_TEXT, "typed-escapes")
    shown = parley("calls", "show", call_id)
    assert shown.exit_code == 0, shown.output
    printed = flat(inert(shown))
    assert r"\x1b]52;c;ZWNobyBwd25lZA==\x07" in printed, "the operator sees what was sent, visibly"
    assert r"\x1b[2J\x1b[31mRED \x9b2J\x85 [bold]loud[/bold]" in printed, printed

    as_json = parley("calls", "show", call_id, "--json")
    assert as_json.exit_code == 0, as_json.output
    inert(as_json)  # pydantic's JSON leaves DEL and C1 raw inside strings
    said = [turn["text"] for turn in json.loads(as_json.stdout)["transcript"]]
    assert said[0] == CALLER_TEXT, "--json is the exact data"


def test_agent_names_with_escape_sequences_print_inert(store: Path) -> None:
    agent_id = run_sync(_store_agent_as_before("esc\x1b[2J\x1b]0;owned\x07", "line one\nline\x1b[8m two"))
    listed = parley("agents", "list")
    assert listed.exit_code == 0, listed.output
    assert r"esc\x1b[2J\x1b]0;owned\x07" in inert(listed)
    shown = parley("agents", "show", agent_id)
    assert shown.exit_code == 0, shown.output
    printed = inert(shown)
    assert "line one\nline\\x1b[8m two" in printed, "a description keeps its lines, not its escapes"
    assert json.loads(inert(parley("agents", "list", "--json")))["data"][0]["name"] == (
        "esc\x1b[2J\x1b]0;owned\x07"
    )

    call_id = _call_where_the_caller_typed("hello", "renamed-agent")
    run_sync(_rename_in_store("public", "pub\x9b31mlic"))
    calls = parley("calls", "list")
    assert calls.exit_code == 0, calls.output
    assert call_id in calls.stdout and r"pub\x9b31mlic" in inert(calls)


def test_rich_markup_in_names_and_descriptions_prints_as_written(store: Path) -> None:
    made = parley("agents", "create", "desc-test", "--description", DESCRIPTION)
    assert made.exit_code == 0, made.output
    shown = parley("agents", "show", "desc-test")
    assert shown.exit_code == 0, shown.output  # was a MarkupError: "[/bold]" closes nothing
    assert DESCRIPTION in inert(shown)

    disguised = parley("agents", "create", "[red]x[/red]")
    assert disguised.exit_code == 0, disguised.output
    assert "created agent [red]x[/red] (" in inert(disguised), "not printed as a plain 'x'"
    assert "[red]x[/red]" in inert(parley("agents", "list"))
    renamed = parley("agents", "update", "[red]x[/red]", "--name", ":warning: [blink]y[/blink]")
    assert renamed.exit_code == 0, renamed.output
    assert "agent :warning: [blink]y[/blink] (" in inert(renamed), "no emoji, no markup"
    assert ":warning: [blink]y[/blink] (" in inert(parley("agents", "show", ":warning: [blink]y[/blink]"))


def test_the_cli_refuses_a_control_character_in_a_new_agents_name(store: Path) -> None:
    refused = parley("agents", "create", "bad\x1b[2Jname")
    assert refused.exit_code == 2, refused.output
    assert "control characters" in inert(refused) and "(U+001B)" in inert(refused)
    assert json.loads(parley("agents", "list", "--json").stdout)["data"] == []


def test_a_models_analysis_repeating_the_callers_escapes_prints_inert(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The post-call analysis is model text, and a model repeats what it was told."""

    async def echoing(_agent: AgentConfig, _secrets: Mapping[str, str]) -> LanguageModel:
        return ScriptedModel(
            [
                ScriptRule.say("Summarize", "Caller said \x1b[2J[bold]x[/bold]."),
                ScriptRule.say("JSON schema", '{"greeting": "hi \\u009b31m"}'),
                ScriptRule.say("criterion", '{"evidence": "\\u001b]52;c;eA==\\u0007", "success": true}'),
            ]
        )

    monkeypatch.setattr("parley.platform.analysis.stack_model", echoing)
    config = AgentConfig.model_validate({"name": "sim", "analysis": ANALYSIS})
    call_id = run_sync(record_simulation(agent=config, events=events("analysed")))
    ran = parley("calls", "analyze", call_id)
    assert ran.exit_code == 0, ran.output
    printed = inert(ran)
    assert r"summary: Caller said \x1b[2J[bold]x[/bold]." in printed, printed
    assert r"hi \x9b31m" in printed and r"\x1b]52;c;eA==\x07" in printed, printed


# --- the API refuses them ------------------------------------------------------------------------------


@pytest.fixture
async def client(db_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    platform = await Platform.open(
        Settings(_env_file=None, data_dir=tmp_path, database_url=db_url, api_key=KEY)
    )
    try:
        async with api_client(platform, KEY) as http:
            yield http
    finally:
        await platform.close()


def _refused_naming(response: httpx.Response, field: str) -> bool:
    return response.status_code == 422 and any(
        field in [str(part) for part in error["loc"]] and "control character" in error["msg"]
        for error in response.json()["detail"]
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "esc\x1b[2Jname"}, "name"),
        ({"name": "bell\x07"}, "name"),
        ({"name": "csi\x9b31m"}, "name"),
        ({"name": "del\x7f"}, "name"),
        ({"name": "two\nlines"}, "name"),
        ({"name": "ok", "description": "\x1b]52;c;ZWNobw==\x07"}, "description"),
        ({"name": "ok", "config": {"first_message": "Hi\x1b[2J"}}, "first_message"),
    ],
    ids=["esc", "bel", "c1", "del", "line-break", "description", "config"],
)
async def test_the_api_refuses_control_characters_with_a_422_naming_the_field(
    client: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    created = await client.post("/v1/agents", json=body)
    assert _refused_naming(created, field), created.text
    seed = await client.post("/v1/agents", json={"name": "seed"})
    assert seed.status_code == 201, seed.text
    patched = await client.patch(f"/v1/agents/{seed.json()['id']}", json=body)
    assert _refused_naming(patched, field), patched.text
    names = [a["name"] for a in (await client.get("/v1/agents")).json()["data"]]
    assert names == ["seed"], "nothing refused was stored"


async def test_honest_text_and_markup_are_still_accepted(client: httpx.AsyncClient) -> None:
    """Markup is data (printed as written), and text keeps its tabs and line breaks (CRLF from forms)."""
    body = {"name": "[red]x[/red]", "description": "line one\r\nline two\tend", "config": {}}
    made = await client.post("/v1/agents", json=body)
    assert made.status_code == 201, made.text
    assert made.json()["description"] == "line one\r\nline two\tend"


@pytest.mark.parametrize("name", ["tab\there", "two\nlines", "cr\rhere", "sep\u2028arator", "esc\x1b"])
def test_a_plain_name_is_one_line_without_control_characters(name: str) -> None:
    """``PlainName``: names as document names are (agents, tools, businesses, rooms, supervisors)."""
    with pytest.raises(ValidationError, match="control characters or line breaks"):
        TypeAdapter(PlainName).validate_python(name)
    assert TypeAdapter(PlainName).validate_python("[red]x[/red] – ok") == "[red]x[/red] – ok"


def test_serve_prints_a_bad_agent_reference_as_written() -> None:
    """An ``--agent`` reference with brackets crashed ``serve`` with Rich's MarkupError."""
    refused = CliRunner().invoke(app, ["serve", "--agent", "no_such_mod_[/x]:agent"])
    assert refused.exit_code == 2, (refused.output, refused.exception)
    assert "no_such_mod_[/x]" in refused.output
