"""Outbox rows claimed with a lease: the SQL the webhook dispatcher and the notification worker share.

An outbox table has ``status`` (``pending`` → ``sending`` → …), ``attempts``, ``next_attempt_at`` and
``lease_until``. A worker claims a row by a conditional UPDATE, so of several workers exactly one gets it,
and a worker that died mid-send leaves a lease that runs out into a retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

PENDING = "pending"
SENDING = "sending"


def claimable(model: Any, now: datetime) -> ColumnElement[bool]:
    """Rows a worker may claim: pending and due, or sending with a lease that ran out."""
    return or_(
        and_(model.status == PENDING, model.next_attempt_at <= now),
        and_(model.status == SENDING, model.lease_until < now),
    )


async def claim(
    session: AsyncSession, model: Any, row_id: str, now: datetime, lease_until: datetime, **values: Any
) -> bool:
    """Take a row for one attempt (counted now, so an attempt a crash cut short still counts); of two
    workers racing, exactly one gets it. ``values`` are set too (e.g. ``updated_at``)."""
    result = await session.execute(
        update(model)
        .where(model.id == row_id, claimable(model, now))
        .values(status=SENDING, lease_until=lease_until, attempts=model.attempts + 1, **values)
    )
    return getattr(result, "rowcount", 0) == 1
