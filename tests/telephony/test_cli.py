"""``parley numbers …`` and ``parley calls dial`` on the same store as the server (PARLEY_DATA_DIR)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import Result

from parley.commands.agents import agents_app
from parley.commands.calls import calls_app
from parley.commands.number_routing import numbers_app
from parley.logs import configure_logging
from tests.api.cli import command_line, run, temporary_store


@pytest.fixture
def parley(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    with temporary_store(tmp_path / "data", monkeypatch, "PARLEY_TWILIO_CALLER_ID"):
        configure_logging()  # as the CLI does: logs on stderr, stdout is the command's output
        yield command_line(agents=agents_app, calls=calls_app, numbers=numbers_app)


def test_numbers_and_dialing_from_the_command_line(parley: typer.Typer) -> None:
    assert run(parley, "agents", "create", "support").exit_code == 0
    added = run(
        parley, "numbers", "add", "+1 415 555 0100", "--agent", "support", "--label", "desk", "--json"
    )
    assert added.exit_code == 0, added.output
    number = json.loads(added.stdout)
    assert number["number"] == "+14155550100"
    assert run(parley, "numbers", "add", "+14155550100", "--agent", "support").exit_code == 1
    bad = run(parley, "numbers", "add", "555-0100", "--agent", "support")
    assert bad.exit_code == 2 and "number" in bad.output
    listed = json.loads(run(parley, "numbers", "list", "--json").stdout)
    assert [n["id"] for n in listed] == [number["id"]]

    dialed = run(parley, "calls", "dial", "--agent", "support", "--to", "+12025550123", "--json")
    assert dialed.exit_code == 0, dialed.output
    job = json.loads(dialed.stdout)
    assert (job["status"], job["from_number"]) == ("pending", "+14155550100"), "from the first number"
    assert run(parley, "calls", "dial", "--agent", "support", "--to", "12345").exit_code == 2

    assert run(parley, "numbers", "remove", "+14155550100").exit_code == 0
    assert json.loads(run(parley, "numbers", "list", "--json").stdout) == []
    assert run(parley, "numbers", "remove", "+14155550100").exit_code == 1


def said(result: Result) -> str:
    """What a command printed, as one line (the console wraps long messages)."""
    return " ".join(result.output.split())


def test_dial_refuses_a_reused_key_a_premium_rate_number_and_our_own(parley: typer.Typer) -> None:
    assert run(parley, "agents", "create", "tmp-agent").exit_code == 0
    assert run(parley, "numbers", "add", "+14155550100", "--agent", "tmp-agent").exit_code == 0
    dial = ("calls", "dial", "--agent", "tmp-agent", "--idempotency-key", "lead-9")
    first = run(parley, *dial, "--to", "+12025550123", "--json")
    assert first.exit_code == 0, first.output
    again = run(parley, *dial, "--to", "+12025550123")
    assert again.exit_code == 0 and "already queued" in again.stdout
    assert json.loads(first.stdout)["id"] in again.stdout, "the job the key queued"
    other = run(parley, *dial, "--to", "+12025550124")
    assert other.exit_code == 1 and "'lead-9' was used for a different call" in said(other)
    premium = run(parley, "calls", "dial", "--agent", "tmp-agent", "--to", "+19005550178")
    assert premium.exit_code == 2 and "to is a premium-rate number" in said(premium)
    own = run(parley, "calls", "dial", "--agent", "tmp-agent", "--to", "+14155550100")
    assert own.exit_code == 2 and "to is one of the organization's own numbers" in said(own)


def test_an_agent_a_number_routes_to_is_not_deleted(parley: typer.Typer) -> None:
    assert run(parley, "agents", "create", "tmp-agent").exit_code == 0
    assert run(parley, "numbers", "add", "+14155550100", "--agent", "tmp-agent").exit_code == 0
    refused = run(parley, "agents", "delete", "tmp-agent")
    assert refused.exit_code == 1 and "+14155550100" in said(refused) and "numbers remove" in said(refused)
    assert run(parley, "agents", "show", "tmp-agent").exit_code == 0, "still there"
    assert run(parley, "numbers", "remove", "+14155550100").exit_code == 0
    assert run(parley, "agents", "delete", "tmp-agent").exit_code == 0
