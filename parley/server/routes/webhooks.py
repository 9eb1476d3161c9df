"""``/v1/webhooks``: an organization's outbound webhook endpoints and each one's delivery log.

An endpoint's signing secret is shown once, when it is made or rotated; ``/v1/webhooks/signing-secret``
makes the secret webhook *tools* sign their requests with.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Response, status

from parley.platform.agents import NotFound
from parley.platform.schemas import Page
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import CursorQ, Limit, Ref
from parley.store.queries import InvalidCursor
from parley.webhooks.endpoints import (
    DeliveryOut,
    EndpointIn,
    EndpointOut,
    EndpointPatch,
    EndpointWithSecret,
    SigningSecretOut,
    TooMany,
    WebhookService,
)
from parley.webhooks.guard import UrlPolicy, UrlRefused

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_404: dict[int | str, dict[str, Any]] = {404: {"description": "no such endpoint"}}
DeliveryStatusQ = Annotated[
    str | None,
    Query(alias="status", pattern=r"^(pending|sending|delivered|failed)$", description="only these"),
]


def _service(platform: PlatformDep) -> WebhookService:
    return WebhookService(platform.db, platform.secrets, UrlPolicy.from_settings(platform.settings))


def _not_found(exc: NotFound) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, str(exc))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "too many endpoints"}, 422: {"description": "a URL this server refuses"}},
)
async def create_endpoint(body: EndpointIn, principal: Auth, platform: PlatformDep) -> EndpointWithSecret:
    """Subscribe a URL to events. The response holds the endpoint's signing secret, shown only now."""
    try:
        return await _service(platform).create(principal.org_id, body)
    except UrlRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {exc}") from exc
    except TooMany as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.get("")
async def list_endpoints(principal: Auth, platform: PlatformDep) -> list[EndpointOut]:
    return await _service(platform).all(principal.org_id)


@router.post("/signing-secret", status_code=status.HTTP_201_CREATED)
async def new_signing_secret(principal: Auth, platform: PlatformDep) -> SigningSecretOut:
    """A new secret for webhook tools' ``Parley-Signature`` (the organization secret
    ``webhook_signing_secret``), shown only now; it replaces the previous one."""
    return await _service(platform).new_signing_secret(principal.org_id)


@router.get("/{endpoint_id}", responses=_404)
async def get_endpoint(endpoint_id: Ref, principal: Auth, platform: PlatformDep) -> EndpointOut:
    try:
        return await _service(platform).get(principal.org_id, endpoint_id)
    except NotFound as exc:
        raise _not_found(exc) from exc


@router.patch("/{endpoint_id}", responses={**_404, 422: {"description": "a URL this server refuses"}})
async def update_endpoint(
    endpoint_id: Ref, body: EndpointPatch, principal: Auth, platform: PlatformDep
) -> EndpointOut:
    """Change the URL, the events, the description, or pause it (``enabled: false``: events that occur
    meanwhile are not kept for it)."""
    try:
        return await _service(platform).update(principal.org_id, endpoint_id, body)
    except NotFound as exc:
        raise _not_found(exc) from exc
    except UrlRefused as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"url: {exc}") from exc


@router.post("/{endpoint_id}/rotate-secret", responses=_404)
async def rotate_secret(endpoint_id: Ref, principal: Auth, platform: PlatformDep) -> EndpointWithSecret:
    """A new signing secret, shown only now; the old one stops signing at once."""
    try:
        return await _service(platform).rotate(principal.org_id, endpoint_id)
    except NotFound as exc:
        raise _not_found(exc) from exc


@router.delete(
    "/{endpoint_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response, responses=_404
)
async def delete_endpoint(endpoint_id: Ref, principal: Auth, platform: PlatformDep) -> Response:
    """Remove the endpoint, its pending deliveries and its log."""
    try:
        await _service(platform).delete(principal.org_id, endpoint_id)
    except NotFound as exc:
        raise _not_found(exc) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{endpoint_id}/deliveries", responses=_404)
async def list_deliveries(
    endpoint_id: Ref,
    principal: Auth,
    platform: PlatformDep,
    status_: DeliveryStatusQ = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> Page[DeliveryOut]:
    """The endpoint's delivery log, newest first: each event, its status and every attempt."""
    try:
        return await _service(platform).deliveries(principal.org_id, endpoint_id, status_, limit, cursor)
    except NotFound as exc:
        raise _not_found(exc) from exc
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


@router.post(
    "/{endpoint_id}/deliveries/{delivery_id}/retry", responses={404: {"description": "no such delivery"}}
)
async def retry_delivery(
    endpoint_id: Ref, delivery_id: Ref, principal: Auth, platform: PlatformDep
) -> DeliveryOut:
    """Send a delivery again now: one that failed for good, or one to replay."""
    try:
        return await _service(platform).retry(principal.org_id, endpoint_id, delivery_id)
    except NotFound as exc:
        raise _not_found(exc) from exc
