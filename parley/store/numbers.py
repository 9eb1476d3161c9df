"""Phone numbers assigned to organizations, and the agent each one answers with.

A row is the assignment: the number is the organization's (its inbound calls are its calls, and its
outbound calls may show it), whether or not an agent answers it yet (``agent_id`` null: calls are
refused). Who may create a row is the platform's to decide (``platform.phone``): one Twilio account can
carry every organization, so a tenant never takes a number the operator did not give it.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import PhoneNumber
from parley.store.types import new_id, utcnow


class NumberTaken(ValueError):
    """The number is already on the books (numbers are unique across organizations: one routes to one).
    Its message names no organization: whether it may be told which is the caller's to judge."""


class PhoneNumberRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, org_id: str, number: str, agent_id: str | None, label: str = "") -> PhoneNumber:
        """``number`` must already be E.164; raises ``NumberTaken`` when any organization has it."""
        row = PhoneNumber(
            id=new_id("pn"), org_id=org_id, number=number, agent_id=agent_id, label=label, created_at=utcnow()
        )
        if await self.by_number(number) is not None:
            raise NumberTaken(f"{number} is assigned")
        self.session.add(row)
        try:
            await self.session.flush()
        except IntegrityError as exc:  # added by someone else meanwhile; the unit of work rolls back
            raise NumberTaken(f"{number} is assigned") from exc
        return row

    async def by_number(self, number: str) -> PhoneNumber | None:
        return await self.session.scalar(select(PhoneNumber).where(PhoneNumber.number == number))

    async def get(self, org_id: str, ref: str) -> PhoneNumber | None:
        """A number of the organization, by id (``pn_…``) or by the E.164 number itself."""
        column = PhoneNumber.id if ref.startswith("pn_") else PhoneNumber.number
        return await self.session.scalar(
            select(PhoneNumber).where(PhoneNumber.org_id == org_id, column == ref)
        )

    async def list(self, org_id: str, limit: int = 500) -> list[PhoneNumber]:
        result = await self.session.scalars(
            select(PhoneNumber)
            .where(PhoneNumber.org_id == org_id)
            .order_by(PhoneNumber.created_at, PhoneNumber.id)
            .limit(limit)
        )
        return list(result.all())

    async def first(self, org_id: str) -> PhoneNumber | None:
        """The organization's oldest number: the caller id of its outbound calls when none is set."""
        return await self.session.scalar(
            select(PhoneNumber)
            .where(PhoneNumber.org_id == org_id)
            .order_by(PhoneNumber.created_at, PhoneNumber.id)
            .limit(1)
        )

    async def remove(self, row: PhoneNumber) -> None:
        await self.session.delete(row)
        await self.session.flush()
