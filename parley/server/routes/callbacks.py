"""Lead call-backs over the API: ``POST /v1/leads/{id}/callback`` asks the business's agent to call a lead
back, ``POST /v1/businesses/{id}/page-link`` makes the signed link of a business's leads page.

A call-back is 202 when queued now, 200 when one was asked for already (that one, by whoever asked), 409
when it cannot be (the lead did not consent to a call, the business has no agent, nothing to call from)
and 404 for a lead, or a business the lead was not sent to. The outcome lands on the lead (``outcome``,
``status``) and in an email to the business.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, HTTPException, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from parley.platform.agents import Conflict, NotFound
from parley.platform.callbacks import CallbackOut, CallQueue
from parley.platform.links import business_path
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import Ref
from parley.telephony.signatures import public_base_url

router = APIRouter(tags=["leads"])

_NO_QUEUE = "the outbound queue is not running here"
_NO_TWILIO = "Twilio is not configured on this server (PARLEY_TWILIO_ACCOUNT_SID, PARLEY_TWILIO_AUTH_TOKEN)"


def call_queue(request: Request) -> CallQueue:
    """The outbound queue of this server, refusing (503) where no call could be placed."""
    queue: CallQueue | None = getattr(request.app.state, "outbound", None)
    if queue is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, _NO_QUEUE)
    if getattr(request.app.state, "twilio_rest", None) is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, _NO_TWILIO)
    return queue


class CallbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    business_id: str | None = Field(
        None,
        max_length=40,
        pattern=r"^[A-Za-z0-9_]+$",
        description="the business whose agent calls (one the lead was sent to); default: the nearest "
        "with an agent",
    )
    requested_by: Literal["api", "lead"] = Field(
        "api", description="`lead`: the lead asked for it (through your own site or app)"
    )


@router.post(
    "/v1/leads/{lead_id}/callback",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "a call-back was asked for already: that one"},
        404: {"description": "no such lead, or the lead was not sent to that business"},
        409: {"description": "no consent to call, no agent, or nothing to call from"},
        503: {"description": "no calls can be placed from this server"},
    },
)
async def request_callback(
    lead_id: Ref,
    body: CallbackIn,
    request: Request,
    response: Response,
    principal: Auth,
    platform: PlatformDep,
) -> CallbackOut:
    """Have the business's agent call the lead back, within calling hours in the lead's time zone and
    with retries (``/v1/outbound-jobs/{job_id}``). The lead's ``outcome`` then tells how it went, and the
    business gets an email."""
    queue = call_queue(request)
    try:
        made = await platform.callbacks.request(
            queue, principal.org_id, lead_id, business_id=body.business_id, requested_by=body.requested_by
        )
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    response.status_code = status.HTTP_202_ACCEPTED if made.created else status.HTTP_200_OK
    return made


class PageLinkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_days: int = Field(7, ge=1, le=90, description="how long the link works")


class PageLinkOut(BaseModel):
    url: str = Field(description="the business's leads page; anyone with it sees the business's leads")
    expires_at: datetime


@router.post("/v1/businesses/{business_id}/page-link", responses={404: {"description": "no such business"}})
async def business_page_link(
    business_id: Ref, body: PageLinkIn, request: Request, principal: Auth, platform: PlatformDep
) -> PageLinkOut:
    """A signed, expiring link to the business's own leads page (businesses have no accounts yet): its
    leads, their status, and a "Request AI call" button. Send it to the business; it cannot be revoked
    one by one (changing ``PARLEY_LINK_SECRET`` revokes all)."""
    try:
        business = await platform.leads.business(principal.org_id, business_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    ttl = timedelta(days=body.ttl_days)
    made_at = datetime.now(UTC)
    path = business_path(platform.settings, business.id, ttl=ttl, now=made_at.timestamp())
    return PageLinkOut(
        url=public_base_url(request, platform.settings) + path,
        expires_at=(made_at + ttl).replace(microsecond=0),
    )
