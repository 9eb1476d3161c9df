"""The timeline consumer that writes calls down: events, transcript turns and call status.

It reads batches from a consumer group and stores each batch in one transaction before acknowledging
it, so a crash between the two only means the batch is delivered again. Storing is idempotent: events
are keyed by ``(call, seq)`` and turns by the event that closed them, and turns are recomputed from
the stored timeline rather than accumulated, so duplicates and redeliveries change nothing.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

import structlog
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.engine.event_payloads import SessionEnded, payload_or_none
from parley.engine.events import EventType
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.lifecycle import CallStatus, Decision, InvalidStatusTransition
from parley.store.models import Call
from parley.timeline.bus import TimelineConsumer
from parley.timeline.digest import TURN_CLOSERS, TURN_EVENTS, build_turns
from parley.timeline.envelope import Envelope
from parley.timeline.webhooks import enqueue_timeline

log = structlog.get_logger("parley.timeline.persister")

CallEndedHook = Callable[[AsyncSession, Call], Awaitable[None]]
"""Runs in the transaction that ended a call (usage, costs, latency figures)."""

FAILED_REASONS = frozenset({"error", "transport_error", "failed"})
RETRY_MAX_S = 5.0
"""Longest wait between two tries to read a timeline that failed."""


def wall(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Persister:
    def __init__(
        self,
        db: Database,
        *,
        default_org_id: str | None = None,
        on_call_ended: CallEndedHook | None = None,
        batch: int = 200,
        block_s: float = 0.25,
    ) -> None:
        self.db = db
        self.default_org_id = default_org_id
        """Events of a session with no call row get one in this organization (None: they are dropped)."""
        self.on_call_ended = on_call_ended
        self.batch = batch
        self.block_s = block_s
        self.caught_up = asyncio.Event()
        """Set whenever a read found nothing new: everything delivered before it is stored."""

    async def run(self, consumer: TimelineConsumer) -> None:
        """Consume until cancelled. A failed read (the event bus restarting, a dropped connection) is
        logged and tried again with backoff: ending here would leave every later call of this worker
        without its events, transcript and costs until a restart."""
        failures = 0
        while True:
            try:
                stored = await self.step(consumer, self.block_s)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the loop must outlive any one failed read
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.error(
                        "persister cannot read the timeline; retrying", failures=failures, error=repr(exc)
                    )
                await asyncio.sleep(min(RETRY_MAX_S, 0.1 * 2 ** min(failures, 6)))
                continue
            if failures:
                log.info("persister reads the timeline again", after_failures=failures)
                failures = 0
            if not stored:
                self.caught_up.set()

    async def step(self, consumer: TimelineConsumer, block_s: float = 0.0) -> int:
        """Store and acknowledge one batch; returns how many entries it held."""
        envelopes = await consumer.read(self.batch, block_s)
        if envelopes:
            await self._store_until_done(envelopes)
            await consumer.ack(envelopes)
        return len(envelopes)

    async def drain(self, consumer: TimelineConsumer) -> None:
        """Store everything delivered so far (for tests, tools and shutdown)."""
        while await self.step(consumer, 0.05):
            pass

    async def _store_until_done(self, envelopes: Sequence[Envelope]) -> None:
        attempt = 0
        while True:
            try:
                await self.store(envelopes)
                return
            except (OperationalError, DBAPIError, OSError) as exc:
                attempt += 1
                if not _transient(exc) and attempt >= 5:
                    log.error(
                        "persister dropped a batch of events",
                        events=len(envelopes),
                        sessions=sorted({e.session_id for e in envelopes}),
                        attempts=attempt,
                        error=repr(exc),
                    )
                    return
                if attempt in (1, 10) or attempt % 100 == 0:
                    log.warning("persister retrying a batch", attempts=attempt, error=repr(exc))
                await asyncio.sleep(min(5.0, 0.1 * 2 ** min(attempt, 6)))

    async def store(self, envelopes: Sequence[Envelope]) -> None:
        by_session: dict[str, list[Envelope]] = defaultdict(list)
        for envelope in envelopes:
            by_session[envelope.session_id].append(envelope)
        async with self.db.session() as session:
            calls = CallRepository(session)
            known = await calls.by_sessions(list(by_session))
            for session_id in by_session.keys() - known.keys():
                adopted = await self._adopt(calls, session_id)
                if adopted is not None:
                    known[session_id] = adopted
            rows = [
                {
                    "call_id": known[e.session_id].id,
                    "seq": e.seq,
                    "type": e.type,
                    "t": e.t,
                    "at": wall(e.wall),
                    "data": e.data,
                }
                for e in envelopes
                if e.session_id in known
            ]
            await calls.add_events(rows)
            for session_id, batch in by_session.items():
                call = known.get(session_id)
                if call is None:
                    continue
                if any(e.type in TURN_CLOSERS for e in batch):
                    await self.save_turns(calls, call)
                await self._apply_status(session, calls, call, batch)
                await enqueue_timeline(session, call, batch)  # outbound webhooks, in this transaction
            await calls.touch([c.id for c in known.values()])

    async def save_turns(self, calls: CallRepository, call: Call) -> None:
        records = await calls.events(call.id, types=sorted(TURN_EVENTS))
        await calls.save_turns(
            [
                {
                    "call_id": call.id,
                    "seq": t.seq,
                    "speaker": t.speaker,
                    "text": t.text,
                    "start_ms": t.start_ms,
                    "end_ms": t.end_ms,
                    "interrupted": t.interrupted,
                    "reply_id": t.reply_id,
                }
                for t in build_turns(records)
            ]
        )

    async def _adopt(self, calls: CallRepository, session_id: str) -> Call | None:
        if self.default_org_id is None:
            log.warning("persister dropped events of an unknown session", session_id=session_id)
            return None
        return await calls.create(
            self.default_org_id, direction="inbound", transport="unknown", session_id=session_id
        )

    async def _apply_status(
        self, session: AsyncSession, calls: CallRepository, call: Call, batch: Sequence[Envelope]
    ) -> None:
        for envelope in batch:
            try:
                if envelope.type == EventType.SESSION_STARTED:
                    await calls.set_status(call, CallStatus.IN_PROGRESS, at=wall(envelope.wall))
                elif envelope.type == EventType.SESSION_ENDED:
                    await self._end(session, calls, call, envelope)
            except InvalidStatusTransition as exc:
                log.info("ignored a status change", call_id=call.id, reason=str(exc))

    async def _end(
        self, session: AsyncSession, calls: CallRepository, call: Call, envelope: Envelope
    ) -> None:
        ended = payload_or_none(envelope, SessionEnded)
        reason = (ended.reason if ended is not None else "") or "hangup"
        if call.status in (CallStatus.QUEUED, CallStatus.RINGING):  # its start was never seen
            await calls.set_status(call, CallStatus.IN_PROGRESS, at=wall(envelope.wall))
        status = CallStatus.FAILED if reason in FAILED_REASONS else CallStatus.COMPLETED
        decision = await calls.set_status(call, status, reason=reason, at=wall(envelope.wall))
        if decision is Decision.APPLY and self.on_call_ended is not None:
            await self.on_call_ended(session, call)


def _transient(exc: BaseException) -> bool:
    """Connection trouble (retry for ever) as opposed to a batch the database refuses (give up)."""
    if isinstance(exc, OSError):
        return True
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(exc, OperationalError)
    return False
