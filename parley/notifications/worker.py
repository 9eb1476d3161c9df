"""The worker that delivers lead notifications, and the texts and emails agents send during calls
(``send_sms``/``send_email``), from the outbox (``lead_notifications``).

Each round it claims due notifications with a lease (``store/outbox.py``, shared with the webhook
dispatcher), renders each with its organization's templates (a call's message is sent as the agent
wrote it), hands it to the SMTP server or to Twilio (a few at once), and writes down what happened:
``sent`` with the Message-ID or Message SID, or a retry after an exponential backoff
(``PARLEY_NOTIFICATION_RETRY_BACKOFF_S`` doubled each time, capped), or ``failed`` after a permanent
refusal or the last attempt (``POST /v1/lead-notifications/{id}/retry``).

It runs at once when ``wake`` is called (the lead service calls it after a lead's transaction commits,
``CallOutbox`` after a call's message is written), else every ``PARLEY_NOTIFICATION_POLL_S``. Delivery
is at least once: a process killed after the server accepted a message but before it wrote that down
sends it again once the lease runs out, with the same Message-ID (email), so the receiver can tell. A
channel that is not configured (no SMTP host, no Twilio) is not claimed: its notifications wait for a
server that has it.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from parley.config import Settings
from parley.jobs.outbox import backoff_s, run_rounds
from parley.notifications.email import EmailSender
from parley.notifications.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from parley.notifications.sms import SmsSender
from parley.notifications.templates import (
    Rendered,
    TemplateInvalid,
    TemplateStore,
    business_context,
    lead_context,
    render,
)
from parley.store.db import Database
from parley.store.models import Business, Lead, LeadNotification
from parley.store.notifications import TOOL_SOURCE, NotificationRepository
from parley.store.types import utcnow

log = structlog.get_logger("parley.notifications")

BATCH = 50

CallbackUrl = Callable[[Lead, Business], Awaitable[str | None]]
"""Makes the "request an AI call-back" link of a new lead's email to a business (None: no link)."""
ResultHook = Callable[[str, str, float | None], None]
"""Told of each attempt: channel, result (``sent``, ``retry``, ``failed``) and, once sent, the seconds
from the lead's submission."""


class NotificationWorker:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        email: EmailSender | None,
        sms: SmsSender | None,
        clock: Callable[[], datetime] = utcnow,
        on_result: ResultHook | None = None,
        callback_url: CallbackUrl | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.email = email
        self.sms = sms
        self.clock = clock
        """Wall time for leases and backoff (tests move it instead of waiting)."""
        self.on_result = on_result
        self.callback_url = callback_url
        """Set by the call-back feature; without it emails carry no call-back link."""
        self.templates = TemplateStore(db)
        self._wake = asyncio.Event()

    @property
    def channels(self) -> list[str]:
        return [name for name, sender in (("email", self.email), ("sms", self.sms)) if sender is not None]

    def wake(self) -> None:
        """Look for work now rather than at the next poll (after a lead's notifications were written)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled."""
        if not self.channels:
            log.warning(
                "no notification channel is configured (PARLEY_SMTP_HOST, Twilio): notifications wait"
            )
        await run_rounds(
            self.step,
            self._wake,
            poll_s=self.settings.notification_poll_s,
            batch=BATCH,
            log=log,
            what="notification delivery",
        )

    async def step(self) -> int:
        """Claim and send what is due now; returns how many notifications were attempted."""
        channels = self.channels
        if not channels:
            return 0
        now = self.clock()
        lease_until = now + timedelta(seconds=self.settings.notification_lease_s)
        claimed: list[str] = []
        async with self.db.session() as session:  # one commit for the batch: leads keep coming meanwhile
            repo = NotificationRepository(session)
            for notification_id in await repo.due(now, BATCH, channels):
                if await repo.claim(notification_id, now, lease_until):
                    claimed.append(notification_id)
        if claimed:
            gate = asyncio.Semaphore(self.settings.notification_concurrency)

            async def one(notification_id: str) -> None:
                async with gate:
                    await self._deliver(notification_id)

            await asyncio.gather(*(one(n) for n in claimed))
        return len(claimed)

    def backoff_s(self, attempt: int) -> float:
        return backoff_s(
            attempt,
            self.settings.notification_retry_backoff_s,
            self.settings.notification_retry_max_backoff_s,
        )

    async def _deliver(self, notification_id: str) -> None:
        async with self.db.session() as session:
            job = await NotificationRepository(session).job(notification_id)
        if job is None:  # its lead, or its call, was deleted meanwhile
            return
        notification, lead, business, org = job
        attempt = notification.attempts
        where = {"notification_id": notification.id, "org_id": org.id}
        if lead is not None:
            where["lead_id"] = lead.id
        elif notification.call_id is not None:
            where["call_id"] = notification.call_id
        try:
            if notification.source == TOOL_SOURCE:
                provider_id = await self._send_message(notification, org.id)
            elif lead is None:
                raise PermanentDeliveryError("the lead this notification is about is gone")
            else:
                provider_id = await self._send(
                    notification.kind,
                    notification.channel,
                    notification.recipient,
                    notification.id,
                    lead,
                    business,
                    org.id,
                    org.name,
                )
        except DeliveryError as exc:
            await self._failed(notification.channel, notification_id, attempt, exc, where)
            return
        except TemplateInvalid as exc:  # a shipped template failed: a bug, logged; retried like any error
            log.exception("rendering a notification failed", **where)
            await self._failed(
                notification.channel, notification_id, attempt, TransientDeliveryError(str(exc)), where
            )
            return
        except Exception as exc:  # anything else unexpected: logged with context, retried with backoff
            log.exception("sending a notification failed unexpectedly", **where)
            error = TransientDeliveryError(f"{type(exc).__name__}: {exc}")
            await self._failed(notification.channel, notification_id, attempt, error, where)
            return
        at = self.clock()
        async with self.db.session() as session:
            held = await NotificationRepository(session).sent(notification_id, attempt, provider_id, at)
        latency = max(0.0, (at - notification.created_at).total_seconds())
        if not held:
            log.warning("a notification outlived its lease (another worker may send it too)", **where)
        log.info(
            "notification sent",
            channel=notification.channel,
            kind=notification.kind,
            provider_id=provider_id,
            attempt=attempt,
            latency_s=round(latency, 3),
            **where,
        )
        if self.on_result is not None:
            self.on_result(notification.channel, "sent", latency)

    async def _send(
        self,
        kind: str,
        channel: str,
        recipient: str,
        notification_id: str,
        lead: Lead,
        business: Business | None,
        org_id: str,
        org_name: str,
    ) -> str:
        callback_url = None
        if kind == "new_lead" and business is not None and self.callback_url is not None:
            callback_url = await self.callback_url(lead, business)
        context = {
            "lead": lead_context(lead),
            "business": business_context(business) if business is not None else None,
            "organization": {"name": org_name},
            "callback_url": callback_url,
            "outcome": lead.outcome,
        }
        overrides = await self.templates.overrides(org_id, kind)
        rendered = render(kind, overrides, context, notification_id=notification_id, lead_id=lead.id)
        if channel == "email" and self.email is not None:
            return await self.email.send(notification_id, recipient, rendered)
        if channel == "sms" and self.sms is not None:
            return await self.sms.send(notification_id, org_id, recipient, rendered.sms)
        raise PermanentDeliveryError(f"unknown channel {channel!r}")

    async def _send_message(self, notification: LeadNotification, org_id: str) -> str:
        """A call's text or email (``send_sms``/``send_email``), sent as the agent wrote it: no template.
        The email's HTML part is the same text, escaped."""
        body = notification.body or ""
        if notification.channel == "email" and self.email is not None:
            paragraphs = "".join(
                f"<p>{html.escape(part).replace(chr(10), '<br>')}</p>" for part in body.split("\n\n")
            )
            rendered = Rendered(
                subject=notification.subject or "",
                html=f"<html><body>{paragraphs}</body></html>",
                text=body,
                sms=body,
            )
            return await self.email.send(notification.id, notification.recipient, rendered)
        if notification.channel == "sms" and self.sms is not None:
            return await self.sms.send(
                notification.id, org_id, notification.recipient, body, call_id=notification.call_id
            )
        raise PermanentDeliveryError(f"unknown channel {notification.channel!r}")

    async def _failed(
        self, channel: str, notification_id: str, attempt: int, error: DeliveryError, where: dict[str, str]
    ) -> None:
        last = error.permanent or attempt >= self.settings.notification_max_attempts
        retry_at = None if last else self.clock() + timedelta(seconds=self.backoff_s(attempt))
        async with self.db.session() as session:
            held = await NotificationRepository(session).not_sent(
                notification_id, attempt, str(error), retry_at
            )
        if not held:
            log.warning("a notification outlived its lease", attempt=attempt, **where)
        if last:
            log.warning(
                "notification failed for good", channel=channel, attempt=attempt, error=str(error), **where
            )
        else:
            log.info(
                "notification attempt failed; retrying",
                channel=channel,
                attempt=attempt,
                error=str(error),
                retry_at=retry_at.isoformat() if retry_at else None,
                **where,
            )
        if self.on_result is not None:
            self.on_result(channel, "failed" if last else "retry", None)
