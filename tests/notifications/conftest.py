"""Lead notifications against real servers: an SMTP server (aiosmtpd, in the test's event loop, on a port
of this machine) and the local Twilio. The platform runs on a fresh database of each dialect; the worker
is driven round by round (``step``) with a clock the test moves, so retries and backoff are seen without
waiting for them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from parley.config import Settings
from parley.notifications.email import EmailSender, SmtpConfig
from parley.notifications.mailbox import Mailbox, bound_port, serve
from parley.notifications.worker import NotificationWorker
from parley.platform.leads import BusinessIn, LeadIn
from parley.platform.runtime import Platform
from parley.server.errors import install_error_handlers
from parley.server.routes import platform_routers
from parley.store.models import LeadNotification
from parley.store.types import utcnow
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects)

OPERATOR = "ops@parley.test"
API_KEY = "pk_notifications-test-key"
BACKOFF_S = 5.0


class Clock:
    """Wall time for the worker's leases and backoff, moved by the test."""

    def __init__(self) -> None:
        self.now = utcnow() + timedelta(seconds=1)  # past anything enqueued in the test

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def business_in(**changes: Any) -> BusinessIn:
    """A plumber in San Francisco, always open, told by email and text."""
    fields: dict[str, Any] = {
        "name": "Bay Plumbing Co.",
        "category": "plumbing",
        "postal_codes": ["94107", "94110"],
        "hours": {},
        "time_zone": "America/Los_Angeles",
        "notify_email": "office@bayplumbing.example.com",
        "notify_phone": "+14155550123",
    }
    return BusinessIn.model_validate(fields | changes)


def lead_in(**changes: Any) -> LeadIn:
    fields: dict[str, Any] = {
        "name": "Ada Lovelace",
        "phone": "+14155550199",
        "email": "ada@example.org",
        "category": "plumbing",
        "postal_code": "94107",
        "description": "The kitchen sink leaks under the cabinet.",
        "consent_to_call": True,
    }
    return LeadIn.model_validate(fields | changes)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path,
        database_url=db_url,
        api_key=API_KEY,
        operator_email=OPERATOR,
        notification_retry_backoff_s=BACKOFF_S,
        notification_retry_max_backoff_s=60.0,
        notification_max_attempts=4,
        notification_lease_s=30.0,
    )


@pytest.fixture
async def platform(settings: Settings) -> AsyncIterator[Platform]:
    opened = await Platform.open(settings, consume=False, recover=False)
    yield opened
    await opened.close()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The platform's routes on a bare app, authenticated as the default organization."""
    app = FastAPI()
    install_error_handlers(app)
    for router in platform_routers():
        app.include_router(router)
    app.state.platform = platform
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://parley.test",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ) as http:
        yield http


@contextlib.asynccontextmanager
async def smtp_server(mailbox: Mailbox, port: int = 0) -> AsyncIterator[int]:
    """The SMTP server listening (on ``port``, or a free one) until the block ends; yields its port."""
    server = await serve(mailbox, "127.0.0.1", port)
    try:
        yield bound_port(server)
    finally:
        server.close()
        await server.wait_closed()


def smtp_config(port: int) -> SmtpConfig:
    return SmtpConfig(
        host="127.0.0.1",
        port=port,
        starttls=False,
        username=None,
        password=None,
        sender="Leads <leads@parley.test>",
        timeout_s=5.0,
    )


def email_worker(platform: Platform, port: int, clock: Clock) -> NotificationWorker:
    """A worker that sends email (to ``port``) and no texts."""
    return NotificationWorker(
        platform.db, platform.settings, email=EmailSender(smtp_config(port)), sms=None, clock=clock
    )


async def notifications(platform: Platform, lead_id: str | None = None) -> list[LeadNotification]:
    async with platform.db.session() as session:
        statement = select(LeadNotification).order_by(LeadNotification.created_at, LeadNotification.id)
        if lead_id is not None:
            statement = statement.where(LeadNotification.lead_id == lead_id)
        return list(await session.scalars(statement))


async def until(check: Callable[[], Awaitable[bool]], within_s: float = 15.0) -> None:
    """Wait for a state another process or task writes (a row) without telling anyone."""
    async with asyncio.timeout(within_s):
        while not await check():  # noqa: ASYNC110  (the row changes without signalling anyone)
            await asyncio.sleep(0.05)
