"""A ``PARLEY_DATABASE_URL`` that cannot be used (it does not parse, names no database Parley has, or the
database does not answer) is one error line naming the setting and a non-zero exit, never a traceback,
and never the URL itself (it may hold a password)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from parley.cli import app as parley_app
from parley.commands.calls import calls_app
from parley.config import get_settings
from tests.store import services

PASSWORD = "s3cret-pw"
UNREACHABLE = f"postgresql://parley:{PASSWORD}@127.0.0.1:{services.free_port()}/parley"
"""Nothing listens at that port: the connection is refused."""

BAD_URLS = {
    "unparseable": f"not a url {PASSWORD}",
    "port that is no number": f"postgresql://parley:{PASSWORD}@localhost:five/parley",
    "unknown database": f"oracle9://parley:{PASSWORD}@localhost/parley",
    "unreachable": UNREACHABLE,
}


@pytest.fixture
def database_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _one_error_line(ran: Result) -> str:
    assert ran.exit_code == 1, ran.output
    assert isinstance(ran.exception, SystemExit), repr(ran.exception)  # not an uncaught exception
    [line] = ran.stderr.strip().splitlines()
    assert ran.stdout == ""
    assert PASSWORD not in ran.output
    return line


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_calls_list_with_a_bad_database_url_is_one_line_naming_the_setting(
    url: str, database_url: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_DATABASE_URL", url)
    root = typer.Typer()
    root.add_typer(calls_app, name="calls")
    line = _one_error_line(CliRunner().invoke(root, ["calls", "list"]))
    assert line.startswith("error: PARLEY_DATABASE_URL "), line


def test_an_unreachable_database_says_so(database_url: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_DATABASE_URL", UNREACHABLE)
    line = _one_error_line(CliRunner().invoke(parley_app, ["calls", "list"]))
    assert "cannot connect to (ConnectionRefusedError" in line, line


def test_an_unparseable_url_says_how_to_write_one(
    database_url: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_DATABASE_URL", BAD_URLS["unparseable"])
    line = _one_error_line(CliRunner().invoke(parley_app, ["agents", "list"]))
    assert "is not a database URL Parley can read; write it as postgresql://" in line, line


@pytest.mark.parametrize(
    "command", [["leads", "list"], ["businesses", "list"], ["agents", "docs", "list", "x"]]
)
def test_every_store_command_of_parley_refuses_the_same_way(
    command: list[str], database_url: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sub-commands with their own runners (leads, businesses, documents) get the same one line."""
    monkeypatch.setenv("PARLEY_DATABASE_URL", UNREACHABLE)
    line = _one_error_line(CliRunner().invoke(parley_app, command))
    assert line.startswith("error: PARLEY_DATABASE_URL names a database Parley cannot connect to"), line


def test_the_installed_command_prints_no_traceback(tmp_path: Path) -> None:
    env = {**os.environ, "PARLEY_DATA_DIR": str(tmp_path / "data"), "PARLEY_DATABASE_URL": UNREACHABLE}
    ran = subprocess.run(
        [sys.executable, "-m", "parley.cli", "calls", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert ran.returncode == 1, ran.stderr
    assert "Traceback" not in ran.stderr and "╭" not in ran.stderr, ran.stderr
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("error: PARLEY_DATABASE_URL names a database Parley cannot connect to"), line
    assert PASSWORD not in ran.stderr + ran.stdout


def test_a_database_that_refuses_the_connection_says_why(
    database_url: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that answers but has no such database: the driver's reason, not SQLAlchemy's wrapper."""
    from sqlalchemy.engine import make_url

    missing = make_url(services.postgres_url()).set(database="no_such_database", password=PASSWORD)
    monkeypatch.setenv("PARLEY_DATABASE_URL", missing.render_as_string(hide_password=False))
    line = _one_error_line(CliRunner().invoke(parley_app, ["calls", "list"]))
    assert line.startswith("error: PARLEY_DATABASE_URL names a database Parley cannot connect to ("), line
    assert 'database "no_such_database" does not exist' in line, line
