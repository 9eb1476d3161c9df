"""``parley numbers …`` and ``parley calls dial`` on the same store as the server (PARLEY_DATA_DIR)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from parley.commands.records import agents_app, calls_app, numbers_app
from parley.config import get_settings
from parley.logs import configure_logging


@pytest.fixture
def parley(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    for name in ("PARLEY_DATABASE_URL", "PARLEY_TWILIO_CALLER_ID"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    configure_logging()  # as the CLI does: logs on stderr, stdout is the command's output
    root = typer.Typer()
    root.add_typer(agents_app, name="agents")
    root.add_typer(calls_app, name="calls")
    root.add_typer(numbers_app, name="numbers")
    yield root
    get_settings.cache_clear()


def run(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, list(args))


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
