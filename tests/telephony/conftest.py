"""A platform on a fresh SQLite store, the platform's routers on a bare app, and a signer that posts
webhooks the way Twilio does (form-encoded, ``X-Twilio-Signature`` from the library's own validator)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped, unused-ignore]

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.server.errors import install_error_handlers
from parley.server.routes import platform_routers
from parley.telephony.rest import TwilioRest
from tests.store.fixtures import sqlite_template  # noqa: F401  (the migrated template database)

BOOT_KEY = "pk_bootstrap-key-for-telephony-tests"
ACCOUNT_SID = "AC" + "a1" * 16
AUTH_TOKEN = "auth-token-of-the-test-account"
BASE = "http://parley.test"
NUMBER = "+14155550100"
CALLER = "+12025550123"


def call_sid(n: int) -> str:
    return f"CA{n:032x}"


def settings_for(tmp_path: Path, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": url,
        "api_key": BOOT_KEY,
        "twilio_account_sid": ACCOUNT_SID,
        "twilio_auth_token": AUTH_TOKEN,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:  # noqa: F811
    path = tmp_path / "parley.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
async def platform(sqlite_url: str, tmp_path: Path) -> AsyncIterator[Platform]:
    opened = await Platform.open(settings_for(tmp_path, sqlite_url))
    yield opened
    await opened.close()


class FakeRest(TwilioRest):
    """Twilio's REST API as the routes use it, recording what they asked for."""

    def __init__(self) -> None:  # no client: nothing leaves the test
        self.hangups: list[str] = []
        self.transfers: list[tuple[str, str]] = []
        self.placed: list[dict[str, Any]] = []

    async def hang_up(self, sid: str) -> None:
        self.hangups.append(sid)

    async def transfer(self, sid: str, target: str) -> None:
        self.transfers.append((sid, target))

    async def place_call(self, **options: Any) -> str:
        self.placed.append(options)
        return "CA" + f"{len(self.placed):032x}"


@dataclass
class FakeEngine:
    said: list[tuple[str, str | None]] = field(default_factory=list)

    def say(self, text: str, *, end_after: str | None = None) -> None:
        self.said.append((text, end_after))


@dataclass
class FakeLive:
    engine: FakeEngine = field(default_factory=FakeEngine)
    closed: bool = False
    ended: list[str] = field(default_factory=list)

    def end(self, reason: str) -> None:
        self.ended.append(reason)


@dataclass
class FakeRuntime:
    """What the webhooks use of the live runtime: the registry of sessions, and whether it drains."""

    sessions: dict[str, FakeLive] = field(default_factory=dict)
    draining: bool = False
    warmed: list[str] = field(default_factory=list)
    """Sessions whose agent the voice webhook asked to load ahead of the media stream."""

    saved: list[str] = field(default_factory=list)
    """Agents whose saved version the agent routes asked to prepare ahead of their first call."""

    def warm_for_call(self, session_id: str) -> None:
        self.warmed.append(session_id)

    def warm_saved(self, org_id: str, agent_id: str, agent: AgentConfig) -> None:
        self.saved.append(agent_id)

    @property
    def registry(self) -> FakeRuntime:
        return self

    def get(self, session_id: str) -> FakeLive | None:
        return self.sessions.get(session_id)


def make_app(
    platform: Platform, rest: TwilioRest | None = None, runtime: FakeRuntime | None = None
) -> FastAPI:
    from parley.jobs.outbound import OutboundQueue

    app = FastAPI()
    install_error_handlers(app)
    for router in platform_routers():
        app.include_router(router)
    app.state.platform = platform
    app.state.twilio_rest = rest
    app.state.outbound = OutboundQueue(platform, platform.settings, rest) if rest is not None else None
    if runtime is not None:
        app.state.runtime = runtime
    return app


@dataclass
class Phone:
    """The test's view of the server: the REST API (with a key) and Twilio's webhooks (signed)."""

    http: httpx.AsyncClient
    platform: Platform
    rest: FakeRest
    runtime: FakeRuntime
    app: FastAPI

    async def webhook(
        self,
        path: str,
        params: Mapping[str, str],
        *,
        signed_url: str | None = None,
        token: str = AUTH_TOKEN,
        signature: str | None = None,
    ) -> httpx.Response:
        """POST ``params`` form-encoded, signed as Twilio signs (over ``signed_url``, default the URL)."""
        if signature is None:
            signature = RequestValidator(token).compute_signature(signed_url or BASE + path, dict(params))
        return await self.http.post(path, data=dict(params), headers={"X-Twilio-Signature": signature})

    async def agent(self, name: str = "support", **config: Any) -> str:
        created = await self.platform.agents.create(
            self.platform.default_org_id, AgentCreate(name=name, config=AgentConfig(**config))
        )
        return created.id


@pytest.fixture
async def phone(platform: Platform) -> AsyncIterator[Phone]:
    rest, runtime = FakeRest(), FakeRuntime()
    app = make_app(platform, rest, runtime)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=BASE, headers={"Authorization": f"Bearer {BOOT_KEY}"}
    ) as http:
        yield Phone(http, platform, rest, runtime, app)
