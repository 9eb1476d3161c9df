"""An outbound job as the API shows it: the stored row read for a caller, and the answer to queuing one.

The view hides the row's bookkeeping (a cancel asked for while dialing is a flag here, not an outcome),
so the routes, the CLI and a lead's call-back all see a job the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from parley.store.models import OutboundJob
from parley.store.outbound import CANCEL_REQUESTED, JobStatus


class OutboundJobView(BaseModel):
    id: str
    org_id: str
    agent_id: str | None = Field(description="null once the agent was deleted (the job then fails)")
    to_number: str
    from_number: str | None
    status: JobStatus
    priority: int = Field(description="higher is dialed first")
    idempotency_key: str | None
    attempts: int = Field(description="attempts placed so far (the one dialing included)")
    max_attempts: int
    next_attempt_at: datetime = Field(description="when a pending job is due (UTC)")
    window: str = Field(description="calling hours in the callee's local time, e.g. 09:00-20:00")
    time_zone: str = Field(description="the callee's IANA time zone the window is read in")
    last_call_id: str | None = Field(description="the call of the latest attempt")
    last_outcome: str | None = Field(
        description="how the latest attempt ended: the call's status, and its reason (`failed:twilio:21211`)"
    )
    cancel_requested: bool = Field(description="canceled while dialing: canceled once that call ends")
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


def job_view(job: OutboundJob) -> OutboundJobView:
    return OutboundJobView(
        id=job.id,
        org_id=job.org_id,
        agent_id=job.agent_id,
        to_number=job.to_number,
        from_number=job.from_number,
        status=JobStatus(job.status),
        priority=job.priority,
        idempotency_key=job.idempotency_key,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        next_attempt_at=job.next_attempt_at,
        window=f"{job.window_start}-{job.window_end}",
        time_zone=job.time_zone,
        last_call_id=job.last_call_id,
        last_outcome=None if job.last_outcome == CANCEL_REQUESTED else job.last_outcome,
        cancel_requested=job.status == JobStatus.DIALING and job.last_outcome == CANCEL_REQUESTED,
        metadata=job.metadata_,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


@dataclass(frozen=True, slots=True)
class Queued:
    job: OutboundJobView
    created: bool
    """False: the idempotency key had queued this job already (the same request, sent again)."""
