"""``/v1/businesses`` and ``/v1/leads`` (API key), and the public lead form
``POST /v1/public/leads/{org}`` (no key; rate-limited per client address).

A lead is answered 201 when it was made, 200 when its ``Idempotency-Key`` named one already there (the
same lead, nothing sent again) and 409 when that key was used for a different lead; an empty (or blank)
``Idempotency-Key`` is a 422 naming the header, never taken as no key. Invalid input is 422 naming the
field (``loc``: ``["body", "phone"]``), never echoing the value.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from parley.platform.leads import (
    BusinessIn,
    BusinessOut,
    BusinessUpdate,
    Conflict,
    InvalidInput,
    LeadIn,
    LeadOut,
    LeadReceipt,
    NotFound,
    NotificationOut,
    Source,
    SubmitResult,
)
from parley.platform.runtime import Platform
from parley.platform.schemas import Page
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import CursorQ, IdempotencyKey, Limit, Ref
from parley.store.queries import InvalidCursor
from parley.transports.uplink import TokenBucket

router = APIRouter(tags=["leads"])

LeadStatusQ = Annotated[
    str | None,
    Query(
        alias="status",
        pattern=r"^(matched|unmatched|callback_queued|called|callback_failed)$",
        description="only leads in it",
    ),
]
CategoryQ = Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")]
BusinessQ = Annotated[str | None, Query(alias="business_id", max_length=40, pattern=r"^[A-Za-z0-9_]+$")]


def _unprocessable(exc: InvalidInput) -> HTTPException:
    detail = [{**error, "loc": ["body", *error["loc"]]} for error in exc.errors]
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


# --- businesses -----------------------------------------------------------------------------------------


@router.post(
    "/v1/businesses",
    status_code=status.HTTP_201_CREATED,
    responses={404: {"description": "no such agent"}, 422: {"description": "invalid field (named)"}},
)
async def add_business(body: BusinessIn, principal: Auth, platform: PlatformDep) -> BusinessOut:
    """A business that takes leads of one category in a service area (a point and radius, or postal
    codes), told by email and text of each lead; ``hours`` are local to ``time_zone``."""
    try:
        return await platform.leads.create_business(principal.org_id, body)
    except InvalidInput as exc:
        raise _unprocessable(exc) from exc
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.get("/v1/businesses")
async def list_businesses(
    principal: Auth,
    platform: PlatformDep,
    category: CategoryQ = None,
    active: Annotated[bool | None, Query(description="only active (true) or inactive (false) ones")] = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> Page[BusinessOut]:
    """Businesses, newest first."""
    try:
        return await platform.leads.businesses(
            principal.org_id, category=category, active=active, limit=limit, cursor=cursor
        )
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


@router.get("/v1/businesses/{business_id}", responses={404: {"description": "no such business"}})
async def get_business(business_id: Ref, principal: Auth, platform: PlatformDep) -> BusinessOut:
    try:
        return await platform.leads.business(principal.org_id, business_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.patch(
    "/v1/businesses/{business_id}",
    responses={404: {"description": "no such business or agent"}, 422: {"description": "invalid field"}},
)
async def update_business(
    business_id: Ref, body: BusinessUpdate, principal: Auth, platform: PlatformDep
) -> BusinessOut:
    """Change some fields (``{"active": true}`` takes a deactivated business back)."""
    try:
        return await platform.leads.update_business(principal.org_id, business_id, body)
    except InvalidInput as exc:
        raise _unprocessable(exc) from exc
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.delete("/v1/businesses/{business_id}", responses={404: {"description": "no such business"}})
async def deactivate_business(business_id: Ref, principal: Auth, platform: PlatformDep) -> BusinessOut:
    """Deactivate a business: it gets no new leads; its past leads and their matches stay."""
    try:
        return await platform.leads.deactivate_business(principal.org_id, business_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


# --- leads ----------------------------------------------------------------------------------------------


async def _submit(
    platform: Platform,
    org_id: str,
    body: LeadIn,
    response: Response,
    *,
    source: Source,
    key: str | None,
    client_ip: str | None,
) -> SubmitResult:
    try:
        result = await platform.leads.submit(
            org_id,
            body,
            source=source,
            idempotency_key=key,
            client_ip=client_ip,
        )
    except InvalidInput as exc:
        raise _unprocessable(exc) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return result


@router.post(
    "/v1/leads",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "the Idempotency-Key named this lead already; nothing was sent again"},
        409: {"description": "the Idempotency-Key was used for a different lead"},
        422: {"description": "invalid field (named), e.g. a phone number or email"},
    },
)
async def submit_lead(
    body: LeadIn,
    request: Request,
    response: Response,
    principal: Auth,
    platform: PlatformDep,
    idempotency_key: IdempotencyKey = None,
) -> LeadOut:
    """Submit a lead (integrations): matched to the businesses of its category whose area holds it and
    that are open now, who are notified; with no match it is kept ``unmatched`` and the operator told."""
    result = await _submit(
        platform,
        principal.org_id,
        body,
        response,
        source="api",
        key=idempotency_key,
        client_ip=request.client.host if request.client else None,
    )
    return result.lead


@router.get("/v1/leads")
async def list_leads(
    principal: Auth,
    platform: PlatformDep,
    status_: LeadStatusQ = None,
    business_id: BusinessQ = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> Page[LeadOut]:
    """Leads, newest first; ``business_id``: only those matched to that business."""
    try:
        return await platform.leads.leads(
            principal.org_id, status=status_, business_id=business_id, limit=limit, cursor=cursor
        )
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


@router.get("/v1/leads/{lead_id}", responses={404: {"description": "no such lead"}})
async def get_lead(lead_id: Ref, principal: Auth, platform: PlatformDep) -> LeadOut:
    try:
        return await platform.leads.lead(principal.org_id, lead_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.get("/v1/leads/{lead_id}/notifications", responses={404: {"description": "no such lead"}})
async def lead_notifications(lead_id: Ref, principal: Auth, platform: PlatformDep) -> list[NotificationOut]:
    """The messages owed for a lead, and how far each got (``pending`` … ``sent``, ``delivered``)."""
    try:
        return await platform.leads.notifications(principal.org_id, lead_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


# --- the public form ------------------------------------------------------------------------------------


class AddressRate:
    """Token buckets per client address. The least recently seen addresses are forgotten past
    ``max_addresses`` (a forgotten one starts again with a full bucket), so memory stays bounded."""

    def __init__(self, per_minute: float, burst: int, max_addresses: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.max_addresses = max_addresses
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def retry_after(self, address: str) -> int | None:
        """None when ``address`` may send one more now, else the seconds to wait (rounded up)."""
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = TokenBucket(self.rate, self.burst)
            while len(self._buckets) > self.max_addresses:
                self._buckets.popitem(last=False)
        self._buckets.move_to_end(address)
        if bucket.take():
            return None
        return max(1, math.ceil(1.0 / self.rate))


def _public_rate(request: Request, platform: Platform) -> AddressRate:
    limiter: AddressRate | None = getattr(request.app.state, "public_leads_rate", None)
    if limiter is None:
        settings = platform.settings
        limiter = AddressRate(settings.public_leads_per_minute, settings.public_leads_burst)
        request.app.state.public_leads_rate = limiter
    return limiter


@router.post(
    "/v1/public/leads/{org}",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"description": "the Idempotency-Key named this lead already"},
        404: {"description": "no such lead form: the organization is unknown or has no active business"},
        409: {"description": "the Idempotency-Key was used for a different lead"},
        422: {"description": "invalid field (named)"},
        429: {"description": "too many leads from this address; see Retry-After"},
    },
)
async def submit_public_lead(
    org: Ref,
    body: LeadIn,
    request: Request,
    response: Response,
    platform: PlatformDep,
    idempotency_key: IdempotencyKey = None,
) -> LeadReceipt:
    """The lead form of a website: no API key; the organization by its slug or id. Each client address
    may send ``PARLEY_PUBLIC_LEADS_PER_MINUTE`` leads (bursts of ``PARLEY_PUBLIC_LEADS_BURST``)."""
    address = request.client.host if request.client else "unknown"
    wait = _public_rate(request, platform).retry_after(address)
    if wait is not None:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            "too many leads from your address; try again later",
            headers={"Retry-After": str(wait)},
        )
    try:
        org_id = await platform.leads.public_org(org)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    result = await _submit(
        platform, org_id, body, response, source="form", key=idempotency_key, client_ip=address
    )
    return LeadReceipt(id=result.lead.id, received_at=result.lead.created_at)
