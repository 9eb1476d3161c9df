"""A platform on a fresh database of each dialect, the platform's routers on a bare app, and a fixed
clock (a Tuesday, noon in New York) so that opening hours are tested without waiting for anything."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from parley.config import Settings
from parley.jobs.outbound import OutboundQueue
from parley.platform.runtime import Platform
from parley.server.errors import install_error_handlers
from parley.server.routes import platform_routers
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects, Redis)

CALLBACK_PUBLIC_URL = "https://leads.example.com"

BOOT_KEY = "pk_leads-bootstrap-key-for-tests"
OPERATOR = "ops@parley.test"
TUESDAY_NOON_NEW_YORK = datetime(2026, 12, 8, 17, 0, tzinfo=UTC)
NEW_YORK = (40.7128, -74.0060)


def business_body(**changes: Any) -> dict[str, Any]:
    """A plumber serving 25 km around Manhattan, weekdays 09:00-17:00 New York time."""
    body: dict[str, Any] = {
        "name": "Hudson Plumbing",
        "category": "plumbing",
        "latitude": NEW_YORK[0],
        "longitude": NEW_YORK[1],
        "radius_km": 25.0,
        "hours": {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
        "time_zone": "America/New_York",
        "notify_email": "desk@hudson.example.com",
        "notify_phone": "+12125550100",
    }
    return body | changes


def lead_body(**changes: Any) -> dict[str, Any]:
    """Someone in Brooklyn (about 6 km from Manhattan's centre) with a leak."""
    body: dict[str, Any] = {
        "name": "Ada Lovelace",
        "phone": "+12015550123",
        "email": "ada@example.org",
        "category": "plumbing",
        "latitude": 40.6782,
        "longitude": -73.9442,
        "description": "The kitchen sink leaks.",
        "consent_to_call": True,
    }
    return body | changes


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        api_key=BOOT_KEY,
        operator_email=OPERATOR,
        public_leads_per_minute=1.0,
        public_leads_burst=3,
    )


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    opened = await Platform.open(settings, consume=False, recover=False)
    opened.leads.clock = lambda: TUESDAY_NOON_NEW_YORK
    yield opened
    await opened.close()


def callback_settings(db_url: str, tmp_path: Path, **changes: Any) -> Settings:
    """Settings of a server that calls leads back: pages linked from ``CALLBACK_PUBLIC_URL`` and signed,
    a caller id for the outbound queue (plus ``changes``)."""
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        api_key=BOOT_KEY,
        operator_email=OPERATOR,
        public_url=CALLBACK_PUBLIC_URL,
        twilio_caller_id="+12125550199",
        link_secret="test-link-secret-0123456789",
        **changes,
    )


def platform_app(platform: Platform, queue: OutboundQueue | None = None, carrier: Any = None) -> FastAPI:
    """The platform's routers as the server has them; with the outbound queue and a (fake) carrier when
    they are given."""
    made = FastAPI(title="Parley")
    install_error_handlers(made)
    for router in platform_routers():
        made.include_router(router)
    made.state.platform = platform
    if queue is not None:
        made.state.outbound = queue
    if carrier is not None:
        made.state.twilio_rest = carrier
    return made


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return platform_app(platform)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Authenticated with the default organization's key."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://parley.test",
        headers={"Authorization": f"Bearer {BOOT_KEY}"},
    ) as http:
        yield http


@pytest.fixture
async def anon(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """No key: a visitor's browser posting the public form."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://parley.test"
    ) as http:
        yield http
