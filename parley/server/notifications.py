"""Lead notifications in the server: the outbox worker runs as long as the app runs with its store.

Every server process runs one; notifications are leased, so several processes share the outbox safely.
The lead service wakes it after each lead's transaction commits (``platform.leads.wake``). Email is sent
when ``PARLEY_SMTP_HOST`` is set, texts when Twilio is configured; routes find the worker in
``app.state.notifications`` (the call-back feature sets its ``callback_url``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from fastapi import FastAPI

from parley.config import Settings
from parley.notifications.email import EmailSender, SmtpConfig, SmtpNotConfigured
from parley.notifications.sms import SmsSender
from parley.notifications.worker import NotificationWorker
from parley.platform.links import email_callback_url
from parley.server.app import Lifespan
from parley.telephony.rest import TwilioRest

log = structlog.get_logger("parley.server.notifications")


def with_notifications(settings: Settings) -> Lifespan:
    """A lifespan, entered after ``with_platform`` and ``with_telephony``: delivers lead notifications."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        platform = app.state.platform
        email = None
        try:
            smtp = SmtpConfig.from_settings(settings)
        except SmtpNotConfigured as exc:
            log.error("lead emails are off", error=str(exc))
            smtp = None
        if smtp is not None:
            email = EmailSender(smtp)
        rest = getattr(app.state, "twilio_rest", None) or TwilioRest.from_settings(settings)
        sms = SmsSender(rest, platform.db, settings) if isinstance(rest, TwilioRest) else None
        metrics = app.state.runtime.metrics
        worker = NotificationWorker(
            platform.db,
            settings,
            email=email,
            sms=sms,
            on_result=metrics.notification,
            callback_url=email_callback_url(settings),
        )
        app.state.notifications = worker
        platform.leads.wake = worker.wake
        task = asyncio.create_task(worker.run(), name="notification-worker")
        try:
            yield
        finally:
            platform.leads.wake = None
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            app.state.notifications = None

    return lifespan
