"""Outbound webhook endpoints of an organization, their delivery log, and the events they may follow.

An endpoint's signing secret is generated here and shown once, when the endpoint is made (or its secret
rotated); it is kept encrypted with the organization secrets' key, since signing needs the value.
"""

from __future__ import annotations

import secrets as random
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from parley.inputs import SafeStr
from parley.platform.agents import NotFound
from parley.platform.schemas import Page
from parley.platform.secrets import SecretService
from parley.store.db import Database
from parley.store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, WebhookEvent
from parley.store.types import utcnow
from parley.store.webhooks import EVENT_TYPES, WebhookRepository
from parley.store.webhooks import enqueue_event as enqueue_event
from parley.webhooks.guard import UrlPolicy
from parley.webhooks.tool import SIGNING_SECRET

EventName = Literal["call.started", "call.ended", "call.analyzed", "transcript.final", "tool.called"]
assert set(EventName.__args__) == set(EVENT_TYPES)  # type: ignore[attr-defined]
EndpointUrl = Annotated[SafeStr, Field(min_length=8, max_length=2000, description="where events are POSTed")]
MAX_ENDPOINTS = 20


def new_secret() -> str:
    return "whsec_" + random.token_urlsafe(32)


class EndpointIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: EndpointUrl
    events: list[EventName] = Field(min_length=1, max_length=len(EVENT_TYPES))
    description: SafeStr = Field("", max_length=200)

    @field_validator("events")
    @classmethod
    def _distinct(cls, events: list[EventName]) -> list[EventName]:
        return list(dict.fromkeys(events))


class EndpointPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: EndpointUrl | None = None
    events: list[EventName] | None = Field(None, min_length=1, max_length=len(EVENT_TYPES))
    description: SafeStr | None = Field(None, max_length=200)
    enabled: bool | None = None


class EndpointOut(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    created_at: datetime
    updated_at: datetime


class EndpointWithSecret(EndpointOut):
    secret: str = Field(description="verifies `Parley-Signature`; shown this once, keep it")


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float


class DeliveryOut(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: str = Field(description="pending, sending, delivered or failed")
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str | None
    delivered_at: datetime | None
    created_at: datetime
    log: list[AttemptOut] = Field(description="every request made for it, oldest first")
    payload: dict[str, object] = Field(description="the event's data, as sent")


class SigningSecretOut(BaseModel):
    name: str = Field(description="the organization secret webhook tools sign with")
    secret: str = Field(description="shown this once")


def endpoint_out(row: WebhookEndpoint) -> EndpointOut:
    return EndpointOut(
        id=row.id,
        url=row.url,
        events=list(row.events),
        description=row.description,
        enabled=row.enabled,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def delivery_out(row: WebhookDelivery, event: WebhookEvent, attempts: list[WebhookAttempt]) -> DeliveryOut:
    return DeliveryOut(
        id=row.id,
        event_id=event.id,
        event_type=event.type,
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
        log=[
            AttemptOut(
                attempt=a.attempt,
                at=a.at,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
            )
            for a in attempts
        ],
        payload=event.payload,
    )


class TooMany(ValueError):
    """The organization has as many endpoints as it may."""


class WebhookService:
    def __init__(self, db: Database, secrets: SecretService, policy: UrlPolicy) -> None:
        self.db = db
        self.secrets = secrets
        self.policy = policy

    async def create(self, org_id: str, body: EndpointIn) -> EndpointWithSecret:
        """Raises ``UrlRefused`` for a URL this server does not call, ``TooMany`` past the cap."""
        self.policy.check_url(body.url)
        secret = new_secret()
        async with self.db.session() as session:
            repo = WebhookRepository(session)
            if len(await repo.endpoints(org_id)) >= MAX_ENDPOINTS:
                raise TooMany(f"an organization has at most {MAX_ENDPOINTS} webhook endpoints")
            row = await repo.add_endpoint(
                org_id,
                url=body.url,
                events=body.events,
                secret_ciphertext=self.secrets.seal(secret),
                description=body.description,
            )
            return EndpointWithSecret(**endpoint_out(row).model_dump(), secret=secret)

    async def all(self, org_id: str) -> list[EndpointOut]:
        async with self.db.session() as session:
            return [endpoint_out(r) for r in await WebhookRepository(session).endpoints(org_id)]

    async def get(self, org_id: str, endpoint_id: str) -> EndpointOut:
        async with self.db.session() as session:
            return endpoint_out(await _endpoint(session, org_id, endpoint_id))

    async def update(self, org_id: str, endpoint_id: str, patch: EndpointPatch) -> EndpointOut:
        if patch.url is not None:
            self.policy.check_url(patch.url)
        async with self.db.session() as session:
            row = await _endpoint(session, org_id, endpoint_id)
            if patch.url is not None:
                row.url = patch.url
            if patch.events is not None:
                row.events = list(dict.fromkeys(patch.events))
            if patch.description is not None:
                row.description = patch.description
            if patch.enabled is not None:
                row.enabled = patch.enabled
            row.updated_at = utcnow()
            return endpoint_out(row)

    async def rotate(self, org_id: str, endpoint_id: str) -> EndpointWithSecret:
        """A new signing secret (shown once); deliveries from now on are signed with it."""
        secret = new_secret()
        async with self.db.session() as session:
            row = await _endpoint(session, org_id, endpoint_id)
            row.secret_ciphertext = self.secrets.seal(secret)
            row.updated_at = utcnow()
            return EndpointWithSecret(**endpoint_out(row).model_dump(), secret=secret)

    async def delete(self, org_id: str, endpoint_id: str) -> None:
        async with self.db.session() as session:
            if not await WebhookRepository(session).delete_endpoint(org_id, endpoint_id):
                raise NotFound(f"no webhook endpoint {endpoint_id!r}")

    async def deliveries(
        self, org_id: str, endpoint_id: str, status: str | None, limit: int, cursor: str | None
    ) -> Page[DeliveryOut]:
        """The endpoint's delivery log, newest first."""
        async with self.db.session() as session:
            await _endpoint(session, org_id, endpoint_id)
            repo = WebhookRepository(session)
            rows, next_cursor = await repo.deliveries(endpoint_id, status, limit, cursor)
            log = await repo.attempts([d.id for d, _ in rows])
            return Page[DeliveryOut](
                data=[delivery_out(d, e, log[d.id]) for d, e in rows], next_cursor=next_cursor
            )

    async def retry(self, org_id: str, endpoint_id: str, delivery_id: str) -> DeliveryOut:
        """Send a delivery again now (a failed one, or to replay one)."""
        async with self.db.session() as session:
            await _endpoint(session, org_id, endpoint_id)
            repo = WebhookRepository(session)
            row = await repo.retry(endpoint_id, delivery_id)
            if row is None:
                raise NotFound(f"no delivery {delivery_id!r} of endpoint {endpoint_id!r}")
            job = await repo.job(row.id)
            assert job is not None
            return delivery_out(row, job[1], (await repo.attempts([row.id]))[row.id])

    async def new_signing_secret(self, org_id: str) -> SigningSecretOut:
        """Generate the organization's secret for signing webhook *tool* requests (shown once)."""
        secret = new_secret()
        await self.secrets.put(org_id, SIGNING_SECRET, secret)
        return SigningSecretOut(name=SIGNING_SECRET, secret=secret)


async def _endpoint(session: AsyncSession, org_id: str, endpoint_id: str) -> WebhookEndpoint:
    row = await WebhookRepository(session).endpoint(org_id, endpoint_id)
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id!r}")
    return row
