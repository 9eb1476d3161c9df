"""The API tests' platform and client (a fresh database of each dialect), and ``parley agents`` with its
``docs`` commands on a store in the test's directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer

from parley.commands.agents import agents_app
from parley.commands.documents import docs_app
from tests.api.cli import command_line, temporary_store
from tests.api.conftest import client, platform  # noqa: F401  (fixtures)
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects)


@pytest.fixture
def parley(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    """``parley agents …`` and ``parley agents docs …`` on ``tmp_path/data``."""
    with temporary_store(tmp_path / "data", monkeypatch):
        agents = typer.Typer()
        agents.registered_commands = list(agents_app.registered_commands)
        agents.add_typer(docs_app, name="docs")
        yield command_line(agents=agents)
