"""The lead-notification outbox (``lead_notifications``) as the delivery worker and Twilio's callbacks
change it.

    pending ──claim──▶ sending ──accepted──▶ sent ──(SMS: Twilio's callback)──▶ delivered | failed
       ▲                  ├──error, attempts left──▶ pending (after backoff)
       └── lease ran out ─┘──permanent error, or none left──▶ failed (``retry`` makes it pending again)

Rows are written by ``store/leads.py`` in the lead's transaction, and by ``enqueue_message`` for the
texts and emails an agent sends during a call (``send_sms``/``send_email``). Every change here is a
conditional UPDATE, so a worker whose lease ran out, a late or repeated callback, or two workers racing
never move a row backwards.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import Business, Lead, LeadNotification, Organization
from parley.store.outbox import claim, claimable
from parley.store.types import new_id, utcnow

ERROR_CHARS = 500


class NotificationStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"


Job = tuple[LeadNotification, Lead | None, Business | None, Organization]
"""A claimed notification with what it is about (a call's message has no lead)."""

TOOL_SOURCE = "tool"
CALL_MESSAGE = "call_message"


class NotificationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def due(self, now: datetime, limit: int, channels: list[str]) -> list[str]:
        """Notifications a worker may claim now, on the channels it can send, oldest due first."""
        rows = await self.session.scalars(
            select(LeadNotification.id)
            .where(claimable(LeadNotification, now), LeadNotification.channel.in_(channels))
            .order_by(LeadNotification.next_attempt_at, LeadNotification.id)
            .limit(limit)
        )
        return list(rows)

    async def enqueue_message(
        self,
        *,
        org_id: str,
        call_id: str,
        channel: str,
        recipient: str,
        body: str,
        subject: str | None = None,
    ) -> str:
        """Queue a call's text or email (due now, delivered by the same worker); returns its id."""
        now = utcnow()
        row = LeadNotification(
            id=new_id("ntf"),
            org_id=org_id,
            lead_id=None,
            call_id=call_id,
            source=TOOL_SOURCE,
            kind=CALL_MESSAGE,
            channel=channel,
            recipient=recipient,
            subject=subject,
            body=body,
            status=NotificationStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        return row.id

    async def for_call(self, call_id: str, org_id: str | None = None) -> list[LeadNotification]:
        """The messages a call's agent sent, oldest first (only ``org_id``'s when given: the call detail
        reads them for a tenant)."""
        statement = (
            select(LeadNotification)
            .where(LeadNotification.call_id == call_id, LeadNotification.source == TOOL_SOURCE)
            .order_by(LeadNotification.created_at, LeadNotification.id)
            .execution_options(populate_existing=True)
        )
        if org_id is not None:
            statement = statement.where(LeadNotification.org_id == org_id)
        return list(await self.session.scalars(statement))

    async def claim(self, notification_id: str, now: datetime, lease_until: datetime) -> bool:
        return await claim(self.session, LeadNotification, notification_id, now, lease_until)

    async def job(self, notification_id: str) -> Job | None:
        """A claimed notification with what its message is about."""
        row = (
            await self.session.execute(
                select(LeadNotification, Lead, Organization)
                .outerjoin(Lead, Lead.id == LeadNotification.lead_id)
                .join(Organization, Organization.id == LeadNotification.org_id)
                .where(LeadNotification.id == notification_id)
            )
        ).one_or_none()
        if row is None:
            return None
        notification, lead, org = row[0], row[1], row[2]
        business = None
        if notification.business_id is not None:
            business = await self.session.get(Business, notification.business_id)
        return notification, lead, business, org

    async def sent(self, notification_id: str, attempt: int, provider_id: str, at: datetime) -> bool:
        """The server accepted the message. False when this worker no longer held the row: its lease ran
        out and another took over, or (SMS) Twilio's callback got there first, which is recorded as sent
        here too."""
        result = await self.session.execute(
            update(LeadNotification)
            .where(
                LeadNotification.id == notification_id,
                LeadNotification.status == NotificationStatus.SENDING.value,
                LeadNotification.attempts == attempt,
            )
            .values(
                status=NotificationStatus.SENT.value,
                provider_id=provider_id[:64],
                sent_at=at,
                lease_until=None,
                last_error=None,
            )
        )
        if getattr(result, "rowcount", 0) == 1:
            return True
        result = await self.session.execute(  # the callback was first: only the time is missing
            update(LeadNotification)
            .where(LeadNotification.id == notification_id, LeadNotification.provider_id == provider_id)
            .values(sent_at=func.coalesce(LeadNotification.sent_at, at), lease_until=None)
        )
        return getattr(result, "rowcount", 0) == 1

    async def not_sent(
        self, notification_id: str, attempt: int, error: str, retry_at: datetime | None
    ) -> bool:
        """An attempt failed: pending again at ``retry_at``, or failed for good when it is None."""
        values: dict[str, Any] = {
            "status": NotificationStatus.FAILED.value
            if retry_at is None
            else NotificationStatus.PENDING.value,
            "lease_until": None,
            "last_error": error[:ERROR_CHARS],
        }
        if retry_at is not None:
            values["next_attempt_at"] = retry_at
        result = await self.session.execute(
            update(LeadNotification)
            .where(
                LeadNotification.id == notification_id,
                LeadNotification.status == NotificationStatus.SENDING.value,
                LeadNotification.attempts == attempt,
            )
            .values(**values)
        )
        return getattr(result, "rowcount", 0) == 1

    async def sms_status(
        self, notification_id: str, sid: str, status: NotificationStatus, at: datetime, error: str | None
    ) -> bool:
        """What Twilio's status callback says of a text: ``sent``, ``delivered`` or ``failed``. It may come
        before the worker wrote the send down (then the SID is recorded here), and callbacks may repeat or
        cross: a row only moves forward, and only for the SID it was sent as."""
        earlier = {
            NotificationStatus.SENT: [NotificationStatus.SENDING.value],
            NotificationStatus.DELIVERED: [NotificationStatus.SENDING.value, NotificationStatus.SENT.value],
            NotificationStatus.FAILED: [NotificationStatus.SENDING.value, NotificationStatus.SENT.value],
        }[status]
        values: dict[str, Any] = {"status": status.value, "provider_id": sid}
        if status is NotificationStatus.FAILED:
            values["last_error"] = (error or "undelivered")[:ERROR_CHARS]
        else:
            values["sent_at"] = func.coalesce(LeadNotification.sent_at, at)
        if status is NotificationStatus.DELIVERED:
            values["delivered_at"] = at
        result = await self.session.execute(
            update(LeadNotification)
            .where(
                LeadNotification.id == notification_id,
                LeadNotification.channel == "sms",
                LeadNotification.status.in_(earlier),
                (LeadNotification.provider_id.is_(None)) | (LeadNotification.provider_id == sid),
            )
            .values(**values)
        )
        return getattr(result, "rowcount", 0) == 1

    async def retry(self, org_id: str, notification_id: str, now: datetime) -> LeadNotification | None:
        """Send a failed notification again now (None: no such notification in this organization)."""
        row = await self.session.get(LeadNotification, notification_id)
        if row is None or row.org_id != org_id:
            return None
        if row.status == NotificationStatus.FAILED.value:
            row.status = NotificationStatus.PENDING.value
            row.next_attempt_at = now
            row.attempts = 0
            row.last_error = None
            await self.session.flush()
        return row
