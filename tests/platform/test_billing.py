"""Per-organization usage roll-ups and monthly invoices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from parley.platform.billing import Billing, render_invoice_html
from parley.platform.pricing import Pricing
from parley.store.billing import BillingRepository
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.tenants import TenantRepository


async def _usage(db: Database, org_id: str, at: datetime, cost_micros: int, seconds: float) -> None:
    async with db.session() as session:
        call = await CallRepository(session).create(org_id, direction="inbound", transport="twilio")
        await BillingRepository(session).replace_usage(
            call.id,
            [
                {
                    "call_id": call.id,
                    "org_id": org_id,
                    "at": at,
                    "kind": "asr_seconds",
                    "provider": "deepgram",
                    "model": "nova-2",
                    "quantity": seconds,
                    "unit": "s",
                    "unit_price_micros": 100.0,
                    "cost_micros": cost_micros,
                    "markup_micros": cost_micros // 10,
                },
                {
                    "call_id": call.id,
                    "org_id": org_id,
                    "at": at,
                    "kind": "telephony_minutes",
                    "provider": "twilio",
                    "model": "",
                    "quantity": 1.0,
                    "unit": "min",
                    "unit_price_micros": 8500.0,
                    "cost_micros": 8500,
                    "markup_micros": 850,
                },
            ],
        )


async def test_usage_and_invoices_per_organization(db: Database) -> None:
    async with db.session() as session:
        tenants = TenantRepository(session)
        acme, other = await tenants.ensure_org("acme", "Acme Corp"), await tenants.ensure_org("other")
    # 23:30 UTC on the last day of March is already April in India: months are UTC here
    await _usage(db, acme.id, datetime(2025, 3, 31, 23, 30, tzinfo=UTC), 100_000, 60.0)
    await _usage(db, acme.id, datetime(2025, 3, 2, 9, 0, tzinfo=UTC), 50_000, 30.0)
    await _usage(db, acme.id, datetime(2025, 4, 1, 0, 30, tzinfo=UTC), 70_000, 40.0)
    await _usage(db, other.id, datetime(2025, 3, 10, tzinfo=UTC), 999_000, 500.0)
    billing = Billing(db, Pricing(currency="INR", rates={"INR": 80.0}))

    march = await billing.usage(acme.id, datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))
    assert [(line.kind, line.calls, line.quantity) for line in march.lines] == [
        ("asr_seconds", 2, 90.0),
        ("telephony_minutes", 2, 2.0),
    ]
    assert march.subtotal_usd == Decimal("0.167000") and march.markup_usd == Decimal("0.016700")
    assert [(d.day.isoformat(), d.total_usd) for d in march.daily] == [
        ("2025-03-02", Decimal("0.064350")),
        ("2025-03-31", Decimal("0.119350")),
    ]

    invoice = await billing.invoice_for_month(acme.id, 2025, 3)
    assert invoice.status == "issued" and invoice.organization == "Acme Corp"
    assert (invoice.period_start.isoformat(), invoice.period_end.isoformat()) == ("2025-03-01", "2025-03-31")
    assert invoice.total_usd == Decimal("0.183700") and invoice.total == Decimal("14.70")
    assert invoice.currency == "INR"

    await _usage(db, acme.id, datetime(2025, 3, 15, tzinfo=UTC), 1_000_000, 1.0)  # a late-arriving line
    repriced = Billing(db, Pricing(currency="INR", rates={"INR": 90.0}))
    again = await repriced.invoice_for_month(acme.id, 2025, 3)
    assert again.id == invoice.id and again.total == invoice.total, "an issued invoice never changes"

    now = datetime.now(UTC)
    await _usage(db, acme.id, now - timedelta(seconds=5), 10_000, 5.0)
    draft = await billing.invoice_for_month(acme.id, now.year, now.month)
    assert draft.status == "draft" and draft.total_usd == Decimal("0.020350")
    assert [i.id for i in await billing.invoices(acme.id)] == [draft.id, invoice.id]
    assert await billing.invoices(other.id) == []

    html = render_invoice_html(invoice)
    assert invoice.number in html and "14.70 INR" in html and "Acme Corp" in html
    assert "Speech recognition" in html and "deepgram / nova-2" in html
