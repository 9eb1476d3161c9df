"""Usage and cost lines, their roll-ups, and invoices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Date, cast, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import Invoice, UsageLine
from parley.store.queries import upsert


@dataclass(frozen=True, slots=True)
class UsageTotal:
    kind: str
    provider: str
    model: str
    unit: str
    quantity: float
    cost_micros: int
    markup_micros: int
    calls: int


class BillingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def replace_usage(self, call_id: str, rows: Sequence[dict[str, Any]]) -> None:
        """A call's usage is recomputed whole from its timeline, so a re-run replaces, never adds."""
        kinds = [row["kind"] for row in rows]
        await self.session.execute(
            delete(UsageLine).where(UsageLine.call_id == call_id, UsageLine.kind.not_in(kinds))
        )
        await upsert(self.session, UsageLine, rows, ["call_id", "kind"])

    async def usage(self, call_id: str) -> list[UsageLine]:
        result = await self.session.scalars(
            select(UsageLine).where(UsageLine.call_id == call_id).order_by(UsageLine.id)
        )
        return list(result.all())

    async def totals(self, org_id: str, since: datetime, until: datetime) -> list[UsageTotal]:
        """Usage summed per metered thing over ``[since, until)``."""
        statement = (
            select(
                UsageLine.kind,
                UsageLine.provider,
                UsageLine.model,
                UsageLine.unit,
                func.sum(UsageLine.quantity),
                func.sum(UsageLine.cost_micros),
                func.sum(UsageLine.markup_micros),
                func.count(func.distinct(UsageLine.call_id)),
            )
            .where(UsageLine.org_id == org_id, UsageLine.at >= since, UsageLine.at < until)
            .group_by(UsageLine.kind, UsageLine.provider, UsageLine.model, UsageLine.unit)
            .order_by(UsageLine.kind, UsageLine.provider, UsageLine.model)
        )
        rows = (await self.session.execute(statement)).all()
        return [
            UsageTotal(r[0], r[1], r[2], r[3], float(r[4] or 0), int(r[5] or 0), int(r[6] or 0), int(r[7]))
            for r in rows
        ]

    async def daily_costs(self, org_id: str, since: datetime, until: datetime) -> list[tuple[date, int, int]]:
        """(day, cost, markup) per UTC day with any usage."""
        if self.session.get_bind().dialect.name == "postgresql":
            day: Any = cast(func.timezone("UTC", UsageLine.at), Date)
        else:  # SQLite keeps UTC text; date() takes its day
            day = func.date(UsageLine.at)
        statement = (
            select(day, func.sum(UsageLine.cost_micros), func.sum(UsageLine.markup_micros))
            .where(UsageLine.org_id == org_id, UsageLine.at >= since, UsageLine.at < until)
            .group_by(day)
            .order_by(day)
        )
        rows = (await self.session.execute(statement)).all()
        return [
            (
                r[0] if isinstance(r[0], date) else date.fromisoformat(str(r[0])),
                int(r[1] or 0),
                int(r[2] or 0),
            )
            for r in rows
        ]

    async def invoice(self, org_id: str, invoice_id: str) -> Invoice | None:
        row = await self.session.get(Invoice, invoice_id)
        return row if row is not None and row.org_id == org_id else None

    async def invoice_for_period(self, org_id: str, period_start: date) -> Invoice | None:
        return await self.session.scalar(
            select(Invoice).where(Invoice.org_id == org_id, Invoice.period_start == period_start)
        )

    async def invoices(self, org_id: str) -> list[Invoice]:
        result = await self.session.scalars(
            select(Invoice).where(Invoice.org_id == org_id).order_by(Invoice.period_start.desc())
        )
        return list(result.all())

    async def save_invoice(self, invoice: Invoice) -> Invoice:
        self.session.add(invoice)
        await self.session.flush()
        return invoice
