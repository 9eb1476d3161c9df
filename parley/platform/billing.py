"""Per-organization usage roll-ups and monthly invoices (JSON, and a printable HTML page).

An invoice sums the cost lines of the calls that ended in its month (UTC). A month that is not over
yet gives a ``draft`` that is recomputed on every request; a past month's invoice is ``issued`` once
and never changes after, whatever happens to prices later.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape

from parley.platform.agents import NotFound
from parley.platform.pricing import Pricing, money, split_kind, to_currency
from parley.platform.schemas import DailyCost, InvoiceOut, UsageLineOut, UsageSummary
from parley.store.billing import BillingRepository, UsageTotal
from parley.store.db import Database
from parley.store.models import Invoice
from parley.store.tenants import TenantRepository
from parley.store.types import new_id, utcnow

_templates = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=select_autoescape(["html"])
)


def month_bounds(year: int, month: int) -> tuple[datetime, datetime]:
    """The month as ``[start, end)`` in UTC; a ``ValueError`` for a month the calendar cannot end."""
    if not 1 <= month <= 12:
        raise ValueError(f"month must be 1..12, got {month}")
    if not 1 <= year <= 9999 or (year, month) == (9999, 12):
        raise ValueError(f"no invoice period {year}-{month:02d}: the calendar ends in 9999")
    start = datetime(year, month, 1, tzinfo=UTC)
    return start, start + timedelta(days=calendar.monthrange(year, month)[1])


def _lines(totals: list[UsageTotal]) -> list[UsageLineOut]:
    return [
        UsageLineOut(
            kind=t.kind,
            provider=t.provider,
            model=t.model,
            unit=t.unit,
            quantity=round(t.quantity, 3),
            calls=t.calls,
            cost_usd=money(t.cost_micros),
            markup_usd=money(t.markup_micros),
        )
        for t in totals
    ]


class Billing:
    def __init__(self, db: Database, pricing: Pricing) -> None:
        self.db = db
        self.pricing = pricing

    async def usage(self, org_id: str, start: datetime, end: datetime) -> UsageSummary:
        async with self.db.session() as session:
            repo = BillingRepository(session)
            totals = await repo.totals(org_id, start, end)
            daily = await repo.daily_costs(org_id, start, end)
        subtotal = sum(t.cost_micros for t in totals)
        markup = sum(t.markup_micros for t in totals)
        return UsageSummary(
            start=start,
            end=end,
            lines=_lines(totals),
            daily=[DailyCost(day=d, total_usd=money(c + m)) for d, c, m in daily],
            subtotal_usd=money(subtotal),
            markup_usd=money(markup),
            total_usd=money(subtotal + markup),
            currency=self.pricing.currency,
            exchange_rate=self.pricing.rate,
            total=self.pricing.convert(subtotal + markup),
        )

    async def invoice_for_month(self, org_id: str, year: int, month: int) -> InvoiceOut:
        """The month's invoice, computed now (or as issued, for a month already invoiced and over)."""
        start, end = month_bounds(year, month)
        async with self.db.session() as session:
            repo = BillingRepository(session)
            org = await TenantRepository(session).get_org(org_id)
            if org is None:
                raise NotFound(f"no organization {org_id!r}")
            invoice = await repo.invoice_for_period(org_id, start.date())
            if invoice is not None and invoice.status == "issued":
                return self._out(invoice, org.name)
            totals = await repo.totals(org_id, start, end)
            subtotal = sum(t.cost_micros for t in totals)
            markup = sum(t.markup_micros for t in totals)
            if invoice is None:
                invoice = Invoice(
                    id=new_id("inv"),
                    org_id=org_id,
                    number=f"PAR-{year}{month:02d}-{org_id[-8:].upper()}",
                    period_start=start.date(),
                    period_end=(end - timedelta(days=1)).date(),
                )
            invoice.status = "issued" if end <= utcnow() else "draft"
            invoice.currency = "USD"
            invoice.display_currency = self.pricing.currency
            invoice.exchange_rate = float(self.pricing.rate)
            invoice.subtotal_micros, invoice.markup_micros, invoice.total_micros = (
                subtotal,
                markup,
                subtotal + markup,
            )
            invoice.lines = [line.model_dump(mode="json") for line in _lines(totals)]
            invoice.created_at = utcnow()
            await repo.save_invoice(invoice)
            return self._out(invoice, org.name)

    async def invoices(self, org_id: str) -> list[InvoiceOut]:
        async with self.db.session() as session:
            org = await TenantRepository(session).get_org(org_id)
            rows = await BillingRepository(session).invoices(org_id)
            return [self._out(row, org.name if org else org_id) for row in rows]

    async def invoice(self, org_id: str, invoice_id: str) -> InvoiceOut:
        async with self.db.session() as session:
            row = await BillingRepository(session).invoice(org_id, invoice_id)
            org = await TenantRepository(session).get_org(org_id)
            if row is None:
                raise NotFound(f"no invoice {invoice_id!r}")
            return self._out(row, org.name if org else org_id)

    def _out(self, row: Invoice, org_name: str) -> InvoiceOut:
        rate = Decimal(str(row.exchange_rate))  # the rate the invoice was computed with
        return InvoiceOut(
            id=row.id,
            number=row.number,
            organization=org_name,
            period_start=row.period_start,
            period_end=row.period_end,
            status="issued" if row.status == "issued" else "draft",
            lines=[UsageLineOut.model_validate(line) for line in row.lines],
            subtotal_usd=money(row.subtotal_micros),
            markup_usd=money(row.markup_micros),
            total_usd=money(row.total_micros),
            currency=row.display_currency,
            exchange_rate=rate,
            total=to_currency(row.total_micros, rate),
            created_at=row.created_at,
        )


def render_invoice_html(invoice: InvoiceOut) -> str:
    """A self-contained page that reads well on screen and prints to one clean A4/Letter page."""
    labels = {
        "asr_seconds": "Speech recognition",
        "llm_input_tokens": "Language model, input",
        "llm_output_tokens": "Language model, output",
        "llm_audio_input_tokens": "Speech-to-speech model, audio in",
        "llm_audio_output_tokens": "Speech-to-speech model, audio out",
        "tts_characters": "Speech synthesis",
        "speech_to_speech_seconds": "Speech-to-speech engine",
        "telephony_minutes": "Telephony",
        "sms_segments": "Text messages",
    }
    for line in invoice.lines:  # what a fallback provider served: "Speech synthesis (fallback 1)"
        kind, fallback = split_kind(line.kind)
        if fallback is not None and kind in labels:
            labels[line.kind] = f"{labels[kind]} (fallback {fallback + 1})"
    return _templates.get_template("invoice.html").render(
        invoice=invoice, labels=labels, generated=date.today().isoformat()
    )
