"""``/v1/usage`` and ``/v1/invoices``: what an organization used and what it owes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from parley.platform.agents import NotFound
from parley.platform.billing import month_bounds, render_invoice_html
from parley.platform.schemas import InvoiceOut, UsageSummary
from parley.server.auth import Auth, PlatformDep

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=UsageSummary)
async def usage(
    principal: Auth,
    platform: PlatformDep,
    start: Annotated[datetime | None, Query(description="default: the start of this month (UTC)")] = None,
    end: Annotated[datetime | None, Query(description="default: now")] = None,
) -> UsageSummary:
    """Usage and cost per provider and model, and cost per day, over ``[start, end)``."""
    now = datetime.now(UTC)
    begin = _aware(start) or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    finish = _aware(end) or now
    if finish <= begin:
        raise HTTPException(422, "end must be after start")
    return await platform.billing.usage(principal.org_id, begin, finish)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class InvoiceRequest(BaseModel):
    year: int = Field(ge=2000, le=9999)
    month: int = Field(ge=1, le=12)


@router.post("/v1/invoices", response_model=InvoiceOut)
async def make_invoice(body: InvoiceRequest, principal: Auth, platform: PlatformDep) -> InvoiceOut:
    """The invoice of a month: a draft while the month runs, issued (and fixed) once it is over."""
    month_bounds(body.year, body.month)
    return await platform.billing.invoice_for_month(principal.org_id, body.year, body.month)


@router.get("/v1/invoices", response_model=list[InvoiceOut])
async def list_invoices(principal: Auth, platform: PlatformDep) -> list[InvoiceOut]:
    """Invoices made so far, newest month first."""
    return await platform.billing.invoices(principal.org_id)


@router.get(
    "/v1/invoices/{invoice_id}",
    response_model=InvoiceOut,
    responses={200: {"content": {"text/html": {}}}, 404: {"description": "no such invoice"}},
)
async def get_invoice(
    invoice_id: str,
    principal: Auth,
    platform: PlatformDep,
    format: Annotated[Literal["json", "html"], Query()] = "json",
) -> InvoiceOut | Response:
    """An invoice as JSON, or with ``format=html`` as a printable page."""
    try:
        invoice = await platform.billing.invoice(principal.org_id, invoice_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if format == "html":
        return HTMLResponse(render_invoice_html(invoice))
    return invoice
