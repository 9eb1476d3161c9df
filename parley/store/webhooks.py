"""Outbound webhooks as stored: endpoints, the event outbox, deliveries (one per event and endpoint) and
the log of every attempt.

An event is written in the transaction of the fact it reports (a call's status change, a stored timeline
event), with one delivery row per subscribed endpoint, so an event is never lost to a crash and never
written twice (``key`` is unique per organization: a redelivered timeline batch enqueues nothing new).
Deliveries are claimed with a lease by a conditional UPDATE, so of several workers exactly one sends a
delivery, and a worker that died mid-send leaves a lease that expires into a retry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import (
    Call,
    TranscriptTurn,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from parley.store.outbox import claim, claimable
from parley.store.queries import insert_ignore, page_newest_first
from parley.store.types import new_id, plain_json, utcnow

EVENT_TYPES = ("call.started", "call.ended", "call.analyzed", "transcript.final", "tool.called")
"""What an endpoint may subscribe to."""


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


async def enqueue_event(
    session: AsyncSession, org_id: str, type_: str, payload: Mapping[str, Any], key: str | None = None
) -> str | None:
    """Write an event to the outbox, in the caller's transaction, with a delivery for every endpoint of
    the organization subscribed to it. ``key`` names the fact (``call_x:call.ended``): an event whose
    key is already there is not written again. Returns the event id (None when it was already there)."""
    if type_ not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type_!r}")
    endpoints = await session.scalars(
        select(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.enabled.is_(True))
    )
    subscribed = [endpoint.id for endpoint in endpoints if type_ in endpoint.events]
    if not subscribed:  # an organization without endpoints pays one indexed read, and stores nothing
        return None
    ident = new_id("evt")
    now = utcnow()
    result = await session.execute(
        _insert_event(session).values(
            id=ident,
            org_id=org_id,
            type=type_,
            key=key or ident,
            payload=plain_json(dict(payload)),
            created_at=now,
        )
    )
    if not getattr(result, "rowcount", 0):
        return None
    rows = [
        {
            "id": new_id("whd"),
            "event_id": ident,
            "endpoint_id": endpoint_id,
            "status": DeliveryStatus.PENDING.value,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
            "updated_at": now,
        }
        for endpoint_id in subscribed
    ]
    await insert_ignore(session, WebhookDelivery, rows, ["endpoint_id", "event_id"])
    return ident


def _insert_event(session: AsyncSession) -> Any:
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    return module.insert(WebhookEvent).on_conflict_do_nothing(index_elements=["org_id", "key"])


# --- what the platform's own facts say -----------------------------------------------------------------


def call_view(call: Call) -> dict[str, Any]:
    """A call as webhook payloads show it."""
    duration = None
    if call.started_at is not None and call.ended_at is not None:
        duration = round((call.ended_at - call.started_at).total_seconds(), 3)
    return {
        "id": call.id,
        "session_id": call.session_id,
        "agent_id": call.agent_id,
        "direction": call.direction,
        "transport": call.transport,
        "from_number": call.from_number,
        "to_number": call.to_number,
        "status": call.status,
        "end_reason": call.end_reason,
        "created_at": call.created_at.isoformat(),
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "ended_at": call.ended_at.isoformat() if call.ended_at else None,
        "duration_s": duration,
    }


async def enqueue_call_status(session: AsyncSession, call: Call, *, started: bool) -> None:
    """``call.started`` or ``call.ended`` (with the transcript as stored), for a status just applied."""
    if started:
        await enqueue_event(
            session, call.org_id, "call.started", {"call": call_view(call)}, f"{call.id}:started"
        )
        return
    turns = await session.scalars(
        select(TranscriptTurn)
        .where(TranscriptTurn.call_id == call.id)
        .order_by(TranscriptTurn.start_ms, TranscriptTurn.seq)
    )
    transcript = [
        {
            "speaker": t.speaker,
            "text": t.text,
            "start_ms": t.start_ms,
            "end_ms": t.end_ms,
            "interrupted": t.interrupted,
        }
        for t in turns
    ]
    await enqueue_event(
        session,
        call.org_id,
        "call.ended",
        {"call": call_view(call), "transcript": transcript},
        f"{call.id}:ended",
    )


# --- endpoints, deliveries, attempts -------------------------------------------------------------------


class WebhookRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_endpoint(
        self, org_id: str, *, url: str, events: Sequence[str], secret_ciphertext: str, description: str
    ) -> WebhookEndpoint:
        now = utcnow()
        row = WebhookEndpoint(
            id=new_id("whe"),
            org_id=org_id,
            url=url,
            events=list(events),
            secret_ciphertext=secret_ciphertext,
            description=description,
            enabled=True,
            created_at=now,
            updated_at=now,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def endpoints(self, org_id: str) -> list[WebhookEndpoint]:
        rows = await self.session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.org_id == org_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
        return list(rows)

    async def endpoint(self, org_id: str, endpoint_id: str) -> WebhookEndpoint | None:
        row = await self.session.get(WebhookEndpoint, endpoint_id)
        return row if row is not None and row.org_id == org_id else None

    async def delete_endpoint(self, org_id: str, endpoint_id: str) -> bool:
        result = await self.session.execute(
            delete(WebhookEndpoint).where(WebhookEndpoint.org_id == org_id, WebhookEndpoint.id == endpoint_id)
        )
        return bool(getattr(result, "rowcount", 0))

    async def due(self, now: datetime, limit: int) -> list[str]:
        """Deliveries a worker may claim: pending and due, or sending with a lease that ran out."""
        rows = await self.session.scalars(
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(WebhookEndpoint.enabled.is_(True), _claimable(now))
            .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id)
            .limit(limit)
        )
        return list(rows)

    async def claim(self, delivery_id: str, now: datetime, lease_until: datetime) -> bool:
        """Take a delivery for one attempt; of two workers racing, exactly one gets it."""
        return await claim(self.session, WebhookDelivery, delivery_id, now, lease_until, updated_at=now)

    async def job(self, delivery_id: str) -> tuple[WebhookDelivery, WebhookEvent, WebhookEndpoint] | None:
        row = (
            await self.session.execute(
                select(WebhookDelivery, WebhookEvent, WebhookEndpoint)
                .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
                .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                .where(WebhookDelivery.id == delivery_id)
            )
        ).one_or_none()
        return None if row is None else (row[0], row[1], row[2])

    async def settle(
        self,
        delivery_id: str,
        attempt: int,
        *,
        at: datetime,
        status_code: int | None,
        error: str | None,
        duration_ms: float,
        outcome: DeliveryStatus,
        next_attempt_at: datetime | None = None,
    ) -> bool:
        """Log an attempt and move its delivery on, if this worker still holds it (its lease may have
        run out and another worker taken over: then only the log line is kept)."""
        self.session.add(
            WebhookAttempt(
                delivery_id=delivery_id,
                attempt=attempt,
                at=at,
                status_code=status_code,
                error=error[:500] if error else None,
                duration_ms=round(duration_ms, 1),
            )
        )
        values: dict[str, Any] = {
            "status": outcome.value,
            "lease_until": None,
            "last_status_code": status_code,
            "last_error": error[:500] if error else None,
            "updated_at": utcnow(),
        }
        if outcome is DeliveryStatus.DELIVERED:
            values["delivered_at"] = at
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        result = await self.session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.status == DeliveryStatus.SENDING.value,
                WebhookDelivery.attempts == attempt,
            )
            .values(**values)
        )
        return getattr(result, "rowcount", 0) == 1

    async def deliveries(
        self, endpoint_id: str, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[tuple[WebhookDelivery, WebhookEvent]], str | None]:
        statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
        if status:
            statement = statement.where(WebhookDelivery.status == status)
        rows, next_cursor = await page_newest_first(
            self.session, statement, WebhookDelivery.created_at, WebhookDelivery.id, limit, cursor
        )
        events = {
            e.id: e
            for e in await self.session.scalars(
                select(WebhookEvent).where(WebhookEvent.id.in_([r.event_id for r in rows]))
            )
        }
        return [(r, events[r.event_id]) for r in rows], next_cursor

    async def attempts(self, delivery_ids: Sequence[str]) -> dict[str, list[WebhookAttempt]]:
        found: dict[str, list[WebhookAttempt]] = {d: [] for d in delivery_ids}
        if delivery_ids:
            rows = await self.session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id.in_(list(delivery_ids)))
                .order_by(WebhookAttempt.attempt)
            )
            for row in rows:
                found[row.delivery_id].append(row)
        return found

    async def retry(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery | None:
        """Send a delivery again now (one that failed for good, or to replay one)."""
        row = await self.session.get(WebhookDelivery, delivery_id)
        if row is None or row.endpoint_id != endpoint_id:
            return None
        if row.status != DeliveryStatus.SENDING.value:
            row.status = DeliveryStatus.PENDING.value
            row.next_attempt_at = utcnow()
            row.updated_at = utcnow()
        await self.session.flush()
        return row


def _claimable(now: datetime) -> Any:
    return claimable(WebhookDelivery, now)
