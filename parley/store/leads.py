"""Leads as stored: businesses, leads, the businesses each lead was matched to, and the notification
outbox (``lead_notifications``).

A lead, its matches and its notifications are written in one transaction (the caller's session), so a
crash never leaves a lead nobody is told of, nor a notification of a lead that is not there. A lead with
an idempotency key is inserted with ``ON CONFLICT DO NOTHING`` on (org, key): of two requests racing with
one key, one inserts and the other finds that row, without aborting its transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import Business, Lead, LeadMatch, LeadNotification
from parley.store.queries import insert_ignore, page_newest_first
from parley.store.types import new_id, utcnow

LEAD_STATUSES = ("matched", "unmatched", "callback_queued", "called", "callback_failed")
NOTIFICATION_KINDS = ("new_lead", "unmatched_lead", "callback_outcome")
NOTIFICATION_CHANNELS = ("email", "sms")
NOTIFICATION_STATUSES = ("pending", "sending", "sent", "delivered", "failed")


class LeadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # --- businesses -------------------------------------------------------------------------------------

    async def add_business(self, org_id: str, fields: dict[str, Any]) -> Business:
        now = utcnow()
        business = Business(id=new_id("biz"), org_id=org_id, created_at=now, updated_at=now, **fields)
        self.session.add(business)
        await self.session.flush()
        return business

    async def business(self, org_id: str, business_id: str) -> Business | None:
        return await self.session.scalar(
            select(Business).where(Business.id == business_id, Business.org_id == org_id)
        )

    async def business_page(
        self,
        org_id: str,
        *,
        category: str | None,
        active: bool | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Business], str | None]:
        statement = select(Business).where(Business.org_id == org_id)
        if category is not None:
            statement = statement.where(Business.category == category)
        if active is not None:
            statement = statement.where(Business.active.is_(active))
        return await page_newest_first(
            self.session, statement, Business.created_at, Business.id, limit, cursor
        )

    async def candidates(self, org_id: str, category: str) -> list[Business]:
        """The organization's active businesses of a category: those a lead of it may match."""
        rows = await self.session.scalars(
            select(Business)
            .where(Business.org_id == org_id, Business.category == category, Business.active.is_(True))
            .order_by(Business.created_at, Business.id)
        )
        return list(rows)

    # --- leads ------------------------------------------------------------------------------------------

    async def insert_lead(self, org_id: str, fields: dict[str, Any]) -> tuple[Lead, bool]:
        """The new lead, or the organization's lead with the same ``idempotency_key`` (and False)."""
        now = utcnow()
        ident = new_id("lead")
        row = {"id": ident, "org_id": org_id, "created_at": now, "updated_at": now, **fields}
        await insert_ignore(self.session, Lead, [row], ["org_id", "idempotency_key"])  # NULL keys never clash
        key = fields.get("idempotency_key")
        lead = await (self.lead(org_id, ident) if key is None else self.lead_by_key(org_id, key))
        assert lead is not None, "the row exists once the insert returned"
        return lead, lead.id == ident

    async def lead(self, org_id: str, lead_id: str) -> Lead | None:
        return await self.session.scalar(
            select(Lead)
            .where(Lead.id == lead_id, Lead.org_id == org_id)
            .execution_options(populate_existing=True)
        )

    async def lead_by_key(self, org_id: str, key: str) -> Lead | None:
        return await self.session.scalar(
            select(Lead)
            .where(Lead.org_id == org_id, Lead.idempotency_key == key)
            .execution_options(populate_existing=True)
        )

    async def lead_page(
        self,
        org_id: str,
        *,
        status: str | None,
        business_id: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[Lead], str | None]:
        statement = select(Lead).where(Lead.org_id == org_id)
        if status is not None:
            statement = statement.where(Lead.status == status)
        if business_id is not None:
            matched = select(LeadMatch.lead_id).where(LeadMatch.business_id == business_id)
            statement = statement.where(Lead.id.in_(matched))
        return await page_newest_first(self.session, statement, Lead.created_at, Lead.id, limit, cursor)

    async def add_matches(self, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            now = utcnow()
            self.session.add_all(LeadMatch(created_at=now, **row) for row in rows)
            await self.session.flush()

    async def matches(self, lead_ids: Sequence[str]) -> list[LeadMatch]:
        if not lead_ids:
            return []
        rows = await self.session.scalars(
            select(LeadMatch)
            .where(LeadMatch.lead_id.in_(list(lead_ids)))
            .order_by(  # nearest first; matched by postal code alone (no distance) last, on both dialects
                LeadMatch.lead_id,
                LeadMatch.distance_km.is_(None),
                LeadMatch.distance_km,
                LeadMatch.business_id,
            )
        )
        return list(rows)

    # --- the outbox -------------------------------------------------------------------------------------

    async def enqueue_notifications(self, org_id: str, lead_id: str, rows: Sequence[dict[str, Any]]) -> None:
        """Write notifications owed for a lead (``business_id``, ``kind``, ``channel``, ``recipient``),
        due now. One that already exists (same lead, business, kind and channel) is not written again."""
        now = utcnow()
        full = [
            {
                "id": new_id("ntf"),
                "org_id": org_id,
                "lead_id": lead_id,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                **row,
            }
            for row in rows
        ]
        await insert_ignore(
            self.session, LeadNotification, full, ["lead_id", "business_id", "kind", "channel"]
        )

    async def notifications(self, lead_id: str) -> list[LeadNotification]:
        rows = await self.session.scalars(
            select(LeadNotification)
            .where(LeadNotification.lead_id == lead_id)
            .order_by(LeadNotification.created_at, LeadNotification.id)
            .execution_options(populate_existing=True)
        )
        return list(rows)
