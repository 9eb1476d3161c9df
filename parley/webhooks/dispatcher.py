"""The worker that delivers outbound webhooks from the outbox.

Each round it claims due deliveries (a lease, so two workers never send one delivery at once and a dead
worker's claim expires into a retry), POSTs each event signed to its endpoint, and logs the attempt:

    pending ──claim──▶ sending ──2xx──▶ delivered
       ▲                  ├──error, attempts left──▶ pending (after backoff: base · 2^(n-1), capped)
       └── lease ran out ─┘──error, none left──────▶ failed (``POST …/retry`` sends it again)

Delivery is at least once: a worker killed after the receiver answered but before it wrote that down
sends the event again. Every request carries the event's id (``Parley-Event-Id``), the same on every
attempt, for the receiver to deduplicate on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import structlog

from parley.config import Settings
from parley.jobs.outbox import backoff_s, run_rounds
from parley.platform.secrets import SecretService, SecretUnreadable
from parley.store.db import Database
from parley.store.models import WebhookEndpoint, WebhookEvent
from parley.store.types import utcnow
from parley.store.webhooks import DeliveryStatus, WebhookRepository
from parley.webhooks.guard import UrlPolicy, UrlRefused, guarded_client, refusal
from parley.webhooks.signing import SIGNATURE_HEADER, sign

log = structlog.get_logger("parley.webhooks")

USER_AGENT = "Parley-Webhooks/1"
BATCH = 50
CONCURRENCY = 10
ERROR_BODY_CHARS = 200


def event_body(event: WebhookEvent) -> bytes:
    """What an endpoint receives: the same bytes on every attempt (only the signature's time changes)."""
    document = {
        "id": event.id,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(document, separators=(",", ":"), default=str).encode()


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        secrets: SecretService,
        settings: Settings,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.clock = clock
        """Wall time for leases and backoff (tests move it instead of waiting)."""
        self.secrets = secrets
        self.settings = settings
        self.policy = UrlPolicy.from_settings(settings)
        self._wake = asyncio.Event()
        self._client = guarded_client(self.policy, settings.webhook_delivery_timeout_s)

    def wake(self) -> None:
        """Look for work now rather than at the next poll (after enqueuing something)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver until cancelled (then the HTTP client is closed)."""
        try:
            await run_rounds(
                self.step,
                self._wake,
                poll_s=self.settings.webhook_poll_s,
                batch=BATCH,
                log=log,
                what="webhook delivery",
            )
        finally:
            await self.close()

    async def close(self) -> None:
        await self._client.aclose()

    async def step(self) -> int:
        """Claim and send what is due now; returns how many deliveries were attempted."""
        now = self.clock()
        lease_until = now + timedelta(seconds=self.settings.webhook_lease_s)
        async with self.db.session() as session:
            due = await WebhookRepository(session).due(now, BATCH)
        claimed: list[str] = []
        for delivery_id in due:
            async with self.db.session() as session:
                if await WebhookRepository(session).claim(delivery_id, now, lease_until):
                    claimed.append(delivery_id)
        if claimed:
            gate = asyncio.Semaphore(CONCURRENCY)

            async def one(delivery_id: str) -> None:
                async with gate:
                    try:
                        await self._deliver(delivery_id)
                    except Exception:  # the others go on; its lease runs out and it is sent again
                        log.exception("webhook delivery could not be settled", delivery_id=delivery_id)

            await asyncio.gather(*(one(d) for d in claimed))
        return len(claimed)

    async def _deliver(self, delivery_id: str) -> None:
        async with self.db.session() as session:
            job = await WebhookRepository(session).job(delivery_id)
        if job is None:  # its endpoint was deleted meanwhile
            return
        delivery, event, endpoint = job
        attempt = delivery.attempts
        started, at = time.monotonic(), self.clock()
        try:
            status_code, error = await self._send(endpoint, event, attempt)
        except Exception as exc:  # a failed attempt, never a delivery left `sending` to be reclaimed forever
            log.exception(
                "webhook delivery failed unexpectedly",
                delivery_id=delivery_id,
                endpoint_id=endpoint.id,
                event_type=event.type,
                attempt=attempt,
            )
            status_code, error = None, f"{type(exc).__name__}: {exc}"
        duration_ms = (time.monotonic() - started) * 1000
        ok = status_code is not None and 200 <= status_code < 300
        next_at: datetime | None = None
        if ok:
            outcome = DeliveryStatus.DELIVERED
        elif attempt >= self.settings.webhook_max_attempts:
            outcome = DeliveryStatus.FAILED
        else:
            outcome = DeliveryStatus.PENDING
            next_at = self.clock() + timedelta(seconds=self.backoff_s(attempt))
        async with self.db.session() as session:
            held = await WebhookRepository(session).settle(
                delivery_id,
                attempt,
                at=at,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
                outcome=outcome,
                next_attempt_at=next_at,
            )
        if not held:
            log.warning("a webhook delivery outlived its lease", delivery_id=delivery_id, attempt=attempt)
        elif outcome is DeliveryStatus.FAILED:
            log.warning(
                "webhook delivery failed for good",
                delivery_id=delivery_id,
                endpoint_id=endpoint.id,
                event_type=event.type,
                attempts=attempt,
                error=error,
            )

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (1, 2, …): exponential, capped."""
        return backoff_s(
            attempt, self.settings.webhook_retry_backoff_s, self.settings.webhook_retry_max_backoff_s
        )

    async def _send(
        self, endpoint: WebhookEndpoint, event: WebhookEvent, attempt: int
    ) -> tuple[int | None, str | None]:
        """The endpoint's status code (None when no answer came) and what went wrong, if anything."""
        try:
            self.policy.check_url(endpoint.url)
            secret = self.secrets.unseal(endpoint.secret_ciphertext)
        except (UrlRefused, SecretUnreadable) as exc:
            return None, str(exc)
        body = event_body(event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: sign(secret, body),
            "Parley-Event-Id": event.id,
            "Parley-Event-Type": event.type,
            "Parley-Delivery-Attempt": str(attempt),
        }
        try:
            async with self._client.stream("POST", endpoint.url, content=body, headers=headers) as response:
                if response.is_success:
                    return response.status_code, None
                head = b""
                async for chunk in response.aiter_bytes():  # only the start: an answer may be endless
                    head += chunk
                    if len(head) >= ERROR_BODY_CHARS:
                        break
        except httpx.HTTPError as exc:
            return None, refusal(exc)
        text = head[:ERROR_BODY_CHARS].decode("utf-8", errors="replace").strip()
        return response.status_code, f"HTTP {response.status_code}" + (f": {text}" if text else "")
