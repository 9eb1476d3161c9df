"""The outbound queue's rows: jobs, their claims, and the counts that cap how many dial at once.

The queue's durable state is this table, on SQLite and PostgreSQL alike. Every change of a job's status is
a conditional UPDATE (``WHERE status = …``) so two actors (the dispatcher, a status webhook, a cancel) that
race on one job cannot both win. On PostgreSQL, claims take ``FOR UPDATE SKIP LOCKED`` so any number of
workers can share the table, and one transaction-scoped advisory lock around the claim keeps the
per-organization and per-number caps exact across workers. SQLite has one writer at a time and one server
process dispatching, so there a claim is a plain transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import OutboundJob, PhoneNumber
from parley.store.queries import insert_ignore, page_newest_first
from parley.store.types import new_id, utcnow

CLAIM_LOCK_KEY = 0x7061726C6579_01
"""The advisory lock that serializes claims on PostgreSQL (any constant every worker agrees on)."""

CANCEL_REQUESTED = "cancel_requested"
"""``last_outcome`` of a dialing job whose cancel waits for its live call to end."""


class _AnyAttempt:
    pass


ANY_ATTEMPT = _AnyAttempt()
"""``transition(call_id=ANY_ATTEMPT)``: whichever attempt the job is on."""


class JobStatus(StrEnum):
    PENDING = "pending"
    DIALING = "dialing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    EXHAUSTED = "exhausted"

    @property
    def final(self) -> bool:
        return self not in (JobStatus.PENDING, JobStatus.DIALING)


@dataclass(frozen=True, slots=True)
class Caps:
    org: int
    number: int


@dataclass(slots=True)
class Claim:
    """What one pass of the dispatcher took: jobs now ``dialing``, and jobs moved to their window."""

    claimed: list[OutboundJob]
    postponed: list[OutboundJob]


WindowCheck = Callable[[OutboundJob, datetime], datetime | None]
"""None when ``job`` may be dialed at ``now``, else when its calling window next opens (UTC)."""


class OutboundJobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    @property
    def _postgres(self) -> bool:
        return self.session.get_bind().dialect.name == "postgresql"

    async def create(
        self,
        org_id: str,
        *,
        agent_id: str,
        to_number: str,
        from_number: str | None,
        priority: int,
        idempotency_key: str | None,
        max_attempts: int,
        next_attempt_at: datetime,
        window_start: str,
        window_end: str,
        time_zone: str,
        metadata: dict[str, Any],
    ) -> tuple[OutboundJob, bool]:
        """The new job, or the organization's job with the same idempotency key (and False).

        ``INSERT … ON CONFLICT DO NOTHING`` on the (org, key) unique constraint: of two requests racing
        with one key, one inserts and the other (on PostgreSQL after waiting for the first to commit) finds
        that row. It does not abort the transaction as a caught unique violation would."""
        now = utcnow()
        ident = new_id("job")
        row = {
            "id": ident,
            "org_id": org_id,
            "agent_id": agent_id,
            "to_number": to_number,
            "from_number": from_number,
            "status": JobStatus.PENDING.value,
            "priority": priority,
            "idempotency_key": idempotency_key,
            "attempts": 0,
            "max_attempts": max_attempts,
            "next_attempt_at": next_attempt_at,
            "window_start": window_start,
            "window_end": window_end,
            "time_zone": time_zone,
            "metadata": metadata,
            "created_at": now,
            "updated_at": now,
        }
        await insert_ignore(
            self.session, OutboundJob, [row], ["org_id", "idempotency_key"]
        )  # NULL keys never clash
        job = await (self.get(ident) if idempotency_key is None else self.by_key(org_id, idempotency_key))
        assert job is not None, "the row exists once the insert returned"
        return job, job.id == ident

    async def get(self, job_id: str, org_id: str | None = None) -> OutboundJob | None:
        job = await self.session.scalar(
            select(OutboundJob).where(OutboundJob.id == job_id).execution_options(populate_existing=True)
        )
        if job is None or (org_id is not None and job.org_id != org_id):
            return None
        return job

    async def by_key(self, org_id: str, key: str) -> OutboundJob | None:
        return await self.session.scalar(
            select(OutboundJob)
            .where(OutboundJob.org_id == org_id, OutboundJob.idempotency_key == key)
            .execution_options(populate_existing=True)
        )

    async def page(
        self, org_id: str, status: str | None, limit: int, cursor: str | None
    ) -> tuple[list[OutboundJob], str | None]:
        statement = select(OutboundJob).where(OutboundJob.org_id == org_id)
        if status is not None:
            statement = statement.where(OutboundJob.status == status)
        return await page_newest_first(
            self.session, statement, OutboundJob.created_at, OutboundJob.id, limit, cursor
        )

    async def first_number(self, org_id: str) -> str | None:
        """The organization's oldest phone number (the default caller id of its outbound calls)."""
        return await self.session.scalar(
            select(PhoneNumber.number)
            .where(PhoneNumber.org_id == org_id)
            .order_by(PhoneNumber.created_at, PhoneNumber.id)
            .limit(1)
        )

    async def owns_number(self, org_id: str, number: str) -> bool:
        """Whether ``number`` (E.164) is one of the organization's phone numbers."""
        found = await self.session.scalar(
            select(PhoneNumber.id).where(PhoneNumber.org_id == org_id, PhoneNumber.number == number).limit(1)
        )
        return found is not None

    # --- claiming -------------------------------------------------------------------------------------

    async def dialing_by_org(self) -> dict[str, int]:
        rows = await self.session.execute(
            select(OutboundJob.org_id, func.count())
            .where(OutboundJob.status == JobStatus.DIALING.value)
            .group_by(OutboundJob.org_id)
        )
        return {org: int(count) for org, count in rows}

    async def dialing_by_number(self) -> dict[str, int]:
        """Per callee number, across organizations: one person's phone has one line however many
        businesses queue a call to it."""
        rows = await self.session.execute(
            select(OutboundJob.to_number, func.count())
            .where(OutboundJob.status == JobStatus.DIALING.value)
            .group_by(OutboundJob.to_number)
        )
        return {number: int(count) for number, count in rows}

    async def claim(self, now: datetime, caps: Caps, window: WindowCheck, *, limit: int = 100) -> Claim:
        """Take due ``pending`` jobs (priority first, then oldest) up to the concurrency caps and mark them
        ``dialing`` with one more attempt; due jobs outside their calling window move to its next opening.

        Call inside one transaction; the claimed rows are committed with it."""
        if self._postgres:
            await self.session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK_KEY})
        by_org = await self.dialing_by_org()
        by_number = await self.dialing_by_number()
        statement = select(OutboundJob).where(
            OutboundJob.status == JobStatus.PENDING.value, OutboundJob.next_attempt_at <= now
        )
        full_orgs = [org for org, count in by_org.items() if count >= caps.org]
        full_numbers = [number for number, count in by_number.items() if count >= caps.number]
        if full_orgs:
            statement = statement.where(OutboundJob.org_id.not_in(full_orgs))
        if full_numbers:
            statement = statement.where(OutboundJob.to_number.not_in(full_numbers))
        statement = (
            statement.order_by(OutboundJob.priority.desc(), OutboundJob.created_at, OutboundJob.id)
            .limit(limit)
            .with_for_update(skip_locked=True)  # SQLite has no row locks: the clause is left out there
            .execution_options(populate_existing=True)
        )
        result = Claim([], [])
        for job in (await self.session.scalars(statement)).all():
            opens = window(job, now)
            if opens is not None:
                job.next_attempt_at = opens
                job.updated_at = utcnow()
                result.postponed.append(job)
                continue
            if by_org.get(job.org_id, 0) >= caps.org or by_number.get(job.to_number, 0) >= caps.number:
                continue  # stays due: taken on a later pass, once a call of its org or number ends
            taken = await self.transition(
                job.id,
                expect=(JobStatus.PENDING,),
                status=JobStatus.DIALING,
                attempts=job.attempts + 1,
                last_call_id=None,
            )
            if not taken:
                continue  # canceled since it was read (SQLite: no row lock held)
            by_org[job.org_id] = by_org.get(job.org_id, 0) + 1
            by_number[job.to_number] = by_number.get(job.to_number, 0) + 1
            claimed = await self.get(job.id)
            assert claimed is not None
            result.claimed.append(claimed)
        await self.session.flush()
        return result

    # --- transitions ----------------------------------------------------------------------------------

    async def transition(
        self,
        job_id: str,
        *,
        expect: Sequence[JobStatus],
        call_id: str | _AnyAttempt | None = ANY_ATTEMPT,
        **values: Any,
    ) -> bool:
        """Change a job only if it is still in one of the ``expect`` statuses and, unless ``call_id`` is
        ``ANY_ATTEMPT``, still on that attempt (None: claimed, no call yet). True when this caller won."""
        statement = update(OutboundJob).where(
            OutboundJob.id == job_id, OutboundJob.status.in_([s.value for s in expect])
        )
        if not isinstance(call_id, _AnyAttempt):
            statement = statement.where(
                OutboundJob.last_call_id.is_(None) if call_id is None else OutboundJob.last_call_id == call_id
            )
        if "status" in values:
            values["status"] = JobStatus(values["status"]).value
        values.setdefault("updated_at", utcnow())
        result = await self.session.execute(
            statement.values(**values).execution_options(synchronize_session=False)
        )
        return getattr(result, "rowcount", 0) == 1

    async def dialing(self) -> list[OutboundJob]:
        return list(
            (
                await self.session.scalars(
                    select(OutboundJob)
                    .where(OutboundJob.status == JobStatus.DIALING.value)
                    .execution_options(populate_existing=True)
                )
            ).all()
        )
