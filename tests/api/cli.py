"""The ``parley`` command line in tests: its sub-commands on a SQLite store in a temporary directory
(the same store the server would open), and one way to run them."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from parley.config import get_settings


@contextlib.contextmanager
def temporary_store(data_dir: Path, monkeypatch: pytest.MonkeyPatch, *unset: str) -> Iterator[Path]:
    """Point the command line at ``data_dir`` with no ``PARLEY_DATABASE_URL`` (nor any of ``unset``) from
    the environment; the settings are read afresh inside and again after, so no other test sees them."""
    monkeypatch.setenv("PARLEY_DATA_DIR", str(data_dir))
    for name in ("PARLEY_DATABASE_URL", *unset):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    try:
        yield data_dir
    finally:
        get_settings.cache_clear()


def command_line(**commands: typer.Typer) -> typer.Typer:
    """A ``parley`` with only ``commands`` (``agents=agents_app`` is ``parley agents …``)."""
    root = typer.Typer()
    for name, sub in commands.items():
        root.add_typer(sub, name=name)
    return root


def run(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, list(args))
