"""Listings on an 80- or 100-column terminal show every id whole: an id is what the next command takes
(``parley calls show CALL_ID``), so it is never cut to ``call_2d…``; the other columns give way and the
table still fits the terminal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from parley.cli import app
from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.platform.simulation import record_simulation
from tests.store.fixtures import run_sync
from tests.timeline.samples import events

WIDTHS = ("80", "100")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PARLEY_OPERATOR_EMAIL", "ops@parley.test")
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    with capture_logs():  # the CLI logs to stderr; unconfigured structlog would print to stdout
        yield tmp_path / "data"
    get_settings.cache_clear()


def parley(*args: str, columns: str = "200") -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": columns})
    assert result.exit_code == 0, result.output
    return result.stdout


def as_json(*args: str) -> Any:
    return json.loads(parley(*args, "--json"))


def shown_at(columns: str, *args: str) -> list[str]:
    lines = parley(*args, columns=columns).splitlines()
    assert lines, f"parley {' '.join(args)} printed nothing"
    widest = max(len(line) for line in lines)
    assert widest <= int(columns), f"the table overflows {columns} columns:\n" + "\n".join(lines)
    return lines


def test_listings_show_whole_ids_at_80_and_100_columns(data_dir: Path, tmp_path: Path) -> None:
    run_sync(record_simulation(agent=AgentConfig(name="front-desk"), events=events("sim-session")))
    call = as_json("calls", "list")["data"][0]
    agent = as_json("agents", "list")["data"][0]
    number = as_json(
        "numbers", "add", "+14155550100", "--agent", "front-desk", "--label", "Main line for the front desk"
    )
    business = as_json(
        "businesses",
        "add",
        "Hudson Plumbing and Heating of Greater Springfield",
        "--category",
        "plumbing",
        "--email",
        "desk@hudson.example.com",
        "--phone",
        "+12125550100",
        "--time-zone",
        "America/New_York",
        "--postal-code",
        "11216",
    )
    lead = as_json(
        "leads",
        "submit",
        "--name",
        "Alexandra Longname-Smithson",
        "--phone",
        "+12015550123",
        "--category",
        "plumbing",
        "--postal-code",
        "11216",
        "--consent",
    )
    faq = tmp_path / "opening-hours-and-holidays.md"
    faq.write_text("## Opening hours\nWe are closed on Sundays.\n")
    (document,) = as_json("agents", "docs", "add", "front-desk", str(faq))

    listings: list[tuple[tuple[str, ...], list[str]]] = [
        (("calls", "list"), [call["id"]]),
        (("agents", "list"), [agent["id"]]),
        (("numbers", "list"), [number["id"], number["number"]]),
        (("businesses", "list"), [business["id"]]),
        (("leads", "list"), [lead["id"]]),
        (("agents", "docs", "list", "front-desk"), [document["id"], document["name"]]),
    ]
    for columns in WIDTHS:
        for command, ids in listings:
            lines = shown_at(columns, *command)
            for whole in ids:
                assert any(whole in line for line in lines), (
                    f"`parley {' '.join(command)}` at {columns} columns cut {whole}:\n" + "\n".join(lines)
                )

    # What the listing shows is what the next command takes.
    shown = parley("calls", "show", call["id"], columns="80")
    assert call["id"] in shown
    # The agent of a call or a number is shown by its name (which every command takes) and version.
    assert "front-desk v1" in parley("calls", "list") and "front-desk" in parley("numbers", "list")
