"""Post-call analyses as stored: one row per call, claimed by a worker with a lease."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import CallAnalysisRecord
from parley.store.queries import insert_ignore
from parley.store.types import utcnow


class AnalysisStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class AnalysisRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def request(self, call_id: str, org_id: str) -> None:
        """Ask for an analysis of the call; asking again (a call ended twice) changes nothing."""
        await insert_ignore(
            self.session,
            CallAnalysisRecord,
            [
                {
                    "call_id": call_id,
                    "org_id": org_id,
                    "status": AnalysisStatus.PENDING.value,
                    "attempts": 0,
                    "requested_at": utcnow(),
                    "model": "",
                    "errors": {},
                }
            ],
            ["call_id"],
        )

    async def get(self, call_id: str) -> CallAnalysisRecord | None:
        return await self.session.get(CallAnalysisRecord, call_id)

    async def claim(
        self, *, lease_expired_before: datetime, call_id: str | None = None
    ) -> CallAnalysisRecord | None:
        """The oldest analysis nobody is working on (pending, or running under an expired lease),
        now running and leased to the caller; None when there is none.

        The claim is a compare-and-set on (status, attempts), so two workers never both win a row.
        ``call_id``: only that call's analysis."""
        only = [CallAnalysisRecord.call_id == call_id] if call_id is not None else []
        for _ in range(5):
            row = await self.session.scalar(
                select(CallAnalysisRecord)
                .where(
                    *only,
                    or_(
                        CallAnalysisRecord.status == AnalysisStatus.PENDING.value,
                        (CallAnalysisRecord.status == AnalysisStatus.RUNNING.value)
                        & (CallAnalysisRecord.claimed_at < lease_expired_before),
                    ),
                )
                .order_by(CallAnalysisRecord.requested_at)
                .limit(1)
            )
            if row is None:
                return None
            result = await self.session.execute(
                update(CallAnalysisRecord)
                .where(
                    CallAnalysisRecord.call_id == row.call_id,
                    CallAnalysisRecord.status == row.status,
                    CallAnalysisRecord.attempts == row.attempts,
                )
                .values(status=AnalysisStatus.RUNNING.value, claimed_at=utcnow(), attempts=row.attempts + 1)
                .execution_options(synchronize_session=False)
            )
            if getattr(result, "rowcount", 0) == 1:
                await self.session.refresh(row)
                return row
        return None

    async def finish(self, call_id: str, status: AnalysisStatus, **values: Any) -> None:
        """Store the outcome (``summary``, ``structured_data``, ``success``, ``errors``, ``error`` …)."""
        await self.session.execute(
            update(CallAnalysisRecord)
            .where(CallAnalysisRecord.call_id == call_id)
            .values(status=status.value, completed_at=utcnow(), **values)
            .execution_options(synchronize_session=False)
        )

    async def note_failure(self, call_id: str, error: str) -> None:
        """A try that is worth repeating failed (the model was unavailable): the row stays leased, so it
        is offered again when the lease runs out, which is the back-off."""
        await self.session.execute(
            update(CallAnalysisRecord)
            .where(CallAnalysisRecord.call_id == call_id)
            .values(error=error)
            .execution_options(synchronize_session=False)
        )

    async def rerun(self, call_id: str) -> None:
        """Start over (an operator asked again, or the agent's analysis settings changed)."""
        await self.session.execute(
            update(CallAnalysisRecord)
            .where(CallAnalysisRecord.call_id == call_id)
            .values(
                status=AnalysisStatus.PENDING.value,
                attempts=0,
                requested_at=utcnow(),
                claimed_at=None,
                completed_at=None,
                summary=None,
                structured_data=None,
                success=None,
                success_reason=None,
                errors={},
                error=None,
            )
            .execution_options(synchronize_session=False)
        )
