"""``/v1/usage`` and ``/v1/invoices``: what an organization used and what it owes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field, model_validator
from pydantic_core import PydanticCustomError

from parley.platform.agents import NotFound
from parley.platform.billing import render_invoice_html
from parley.platform.schemas import InvoiceOut, UsageSummary
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import Ref, When

router = APIRouter(tags=["usage"])


@router.get("/v1/usage", response_model=UsageSummary)
async def usage(
    principal: Auth,
    platform: PlatformDep,
    start: When = None,
    end: When = None,
) -> UsageSummary:
    """Usage and cost per provider and model, and cost per day, over ``[start, end)``; ``start`` is by
    default the start of this month (UTC), ``end`` now."""
    now = datetime.now(UTC)
    begin = start or now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    finish = end or now
    if finish <= begin:
        raise HTTPException(422, "end must be after start")
    return await platform.billing.usage(principal.org_id, begin, finish)


class InvoiceRequest(BaseModel):
    year: int = Field(ge=2000, le=9999)
    month: int = Field(ge=1, le=12)

    @model_validator(mode="after")
    def _begun(self) -> InvoiceRequest:
        """A month that has not begun has nothing to bill (and would be stored as an empty draft)."""
        now = datetime.now(UTC)
        if (self.year, self.month) > (now.year, now.month):
            raise PydanticCustomError(
                "month_not_begun",
                "{period} has not begun; invoices are for this month or earlier ones",
                {"period": f"{self.year}-{self.month:02d}"},
            )
        return self


@router.post("/v1/invoices", response_model=InvoiceOut)
async def make_invoice(body: InvoiceRequest, principal: Auth, platform: PlatformDep) -> InvoiceOut:
    """The invoice of a month: a draft while the month runs, issued (and fixed) once it is over."""
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
    invoice_id: Ref,
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
