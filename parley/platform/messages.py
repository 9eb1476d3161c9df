"""A call's texts and emails (the built-ins ``send_sms``/``send_email``) as rows of the notification outbox.

Each message is one row written in its own transaction (``source`` ``tool``, with the call's id), then
the delivery worker is woken: the same worker that delivers lead notifications sends it, with the same
leases, retries and backoff, and Twilio's status callbacks move a text to ``delivered`` or ``failed``. A
message is never lost to a crash once the tool said it was queued.

Before writing, the channel is checked the way the worker will send: email needs ``PARLEY_SMTP_HOST`` (and
a valid ``PARLEY_SMTP_FROM``); a text needs Twilio and a number to send from (``PARLEY_SMS_FROM``, else
the organization's number on the call, else its first number: ``sender_number``). Without them the
tool answers ``MessagesUnavailable`` in a sentence the agent can say, and nothing is written.

The call's detail (``GET /v1/calls/{id}``, ``parley calls show``) lists them (``message_view``); a failed
one is sent again with ``POST /v1/lead-notifications/{id}/retry``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog
from sqlalchemy.exc import SQLAlchemyError

from parley.config import Settings
from parley.engine.messages import MessagesUnavailable
from parley.notifications.email import SmtpConfig, SmtpNotConfigured
from parley.notifications.sms import sender_number
from parley.platform.schemas import CallMessageOut
from parley.store.db import Database
from parley.store.models import LeadNotification
from parley.store.notifications import NotificationRepository
from parley.telephony.rest import TwilioRest

if TYPE_CHECKING:
    from parley.platform.runtime import Platform

log = structlog.get_logger("parley.platform.messages")

Wake = Callable[[], Callable[[], None] | None]
"""Gives the delivery worker's wake-up when one runs (``platform.leads.wake``), else None."""


class CallOutbox:
    """``CallMessages`` for a call on the books."""

    def __init__(
        self, db: Database, settings: Settings, *, org_id: str, call_id: str, wake: Wake | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.org_id = org_id
        self.call_id = call_id
        self.wake = wake

    @classmethod
    def of(cls, platform: Platform, *, org_id: str, call_id: str) -> CallOutbox:
        return cls(
            platform.db, platform.settings, org_id=org_id, call_id=call_id, wake=lambda: platform.leads.wake
        )

    async def send_sms(self, to: str, body: str) -> str:
        if TwilioRest.from_settings(self.settings) is None:
            raise MessagesUnavailable("I can't send text messages on this line")
        if await sender_number(self.db, self.settings, self.org_id) is None:
            raise MessagesUnavailable(
                "I can't send text messages on this line: it has no number to text from"
            )
        return await self._queue("sms", to, body)

    async def send_email(self, to: str, subject: str, body: str) -> str:
        try:
            smtp = SmtpConfig.from_settings(self.settings)
        except SmtpNotConfigured:
            smtp = None
        if smtp is None:
            raise MessagesUnavailable("I can't send emails on this line")
        return await self._queue("email", to, body, subject)

    async def _queue(self, channel: str, to: str, body: str, subject: str | None = None) -> str:
        """Write the row and wake the worker. Shielded: a caller who interrupts once the write began does
        not leave it half done (the tool's reply is dropped, the message still goes)."""
        return await asyncio.shield(self._write(channel, to, body, subject))

    async def _write(self, channel: str, to: str, body: str, subject: str | None) -> str:
        where = {"call_id": self.call_id, "org_id": self.org_id, "channel": channel}
        try:
            async with self.db.session() as session:
                notification_id = await NotificationRepository(session).enqueue_message(
                    org_id=self.org_id,
                    call_id=self.call_id,
                    channel=channel,
                    recipient=to,
                    body=body,
                    subject=subject,
                )
        except SQLAlchemyError as exc:
            log.exception("queueing a call's message failed", **where)
            raise MessagesUnavailable("the message could not be queued just now; try again later") from exc
        wake = self.wake() if self.wake is not None else None
        if wake is not None:
            wake()
        log.info("call message queued", notification_id=notification_id, **where)
        return notification_id


def message_view(row: LeadNotification) -> CallMessageOut:
    """A call's message as the call detail shows it: what was sent, to whom, and how far it got (never
    the provider's ids or the lease)."""
    return CallMessageOut.model_validate(
        {
            "id": row.id,
            "channel": row.channel,
            "to": row.recipient,
            "subject": row.subject,
            "body": row.body or "",
            "status": row.status,
            "attempts": row.attempts,
            "created_at": row.created_at,
            "sent_at": row.sent_at,
            "delivered_at": row.delivered_at,
            "error": row.last_error,
        }
    )
