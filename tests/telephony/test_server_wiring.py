"""The full server wires phone calls in: Twilio's REST client and the outbound queue's dispatcher run
with the store when Twilio is configured, and stop with the server."""

from __future__ import annotations

import asyncio
from pathlib import Path

from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.jobs.outbound import OutboundQueue
from parley.server.app import create_platform_app
from parley.server.stacks import AgentCatalog
from parley.telephony.rest import TwilioRest
from tests.engine.harness import agent, stack
from tests.telephony.conftest import settings_for


async def _factory(_: AgentConfig) -> EngineStack:
    return stack([], [])


def _tasks(name: str) -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == name and not t.done()]


async def test_with_twilio_configured_the_dispatcher_runs_for_the_servers_lifetime(
    sqlite_url: str, tmp_path: Path
) -> None:
    settings = settings_for(
        tmp_path, sqlite_url, public_url="https://voice.example.com", outbound_poll_s=0.05
    )
    app = create_platform_app(settings, catalog=AgentCatalog([agent()]), stack_factory=_factory)
    async with app.router.lifespan_context(app):
        assert isinstance(app.state.twilio_rest, TwilioRest)
        assert isinstance(app.state.outbound, OutboundQueue)
        [dispatcher] = _tasks("outbound-queue")
        app.state.runtime.draining = True  # what a SIGTERM starts: a call placed now would be refused
        await asyncio.wait_for(dispatcher, 10)
    assert app.state.twilio_rest is None and app.state.outbound is None
    assert not _tasks("outbound-dispatcher") and not _tasks("outbound-queue")


async def test_without_twilio_jobs_can_be_read_but_nothing_dials(sqlite_url: str, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, sqlite_url, twilio_account_sid=None, twilio_auth_token=None)
    app = create_platform_app(settings, catalog=AgentCatalog([agent()]), stack_factory=_factory)
    async with app.router.lifespan_context(app):
        assert app.state.twilio_rest is None and isinstance(app.state.outbound, OutboundQueue)
        assert not _tasks("outbound-queue")
