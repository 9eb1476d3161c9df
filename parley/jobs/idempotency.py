"""Whether a request that repeats an idempotency key asks for the call that key already queued.

A repeat of the same request gets the job back; a different call under the same key is refused
(``IdempotencyConflict``), since answering with the old job would tell the caller their call was queued
when it was not. Deciding which is which needs only the stored job and what was asked, so it lives here
rather than in the queue.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from parley.platform.agents import Conflict
from parley.store.models import OutboundJob


class IdempotencyConflict(Conflict):
    """The idempotency key already queued a different call: answering with that job would tell the
    caller their call was queued when it was not (409; use a new key, or send the first request again)."""


def refuse_a_different_call(
    job: OutboundJob, idempotency_key: str | None, asked: dict[str, Any], not_before: datetime | None
) -> None:
    """Raise ``IdempotencyConflict`` unless ``asked`` (named as ``_queued_with`` names them) and
    ``not_before`` (UTC; None: at once) are what ``job`` was queued with under ``idempotency_key``."""
    queued_with = _queued_with(job)
    differ = [name for name, value in asked.items() if queued_with[name] != value]
    if not _same_start(job, not_before):
        differ.append("not_before")
    if differ:
        raise IdempotencyConflict(
            f"idempotency_key {idempotency_key!r} was used for a different call (job {job.id}; "
            f"{', '.join(differ)} differ): use a new key, or send that request again"
        )


def _queued_with(job: OutboundJob) -> dict[str, Any]:
    """What ``job`` was queued with, named as a request names it (to compare a repeat of its key)."""
    return {"agent": job.agent_id, "to": job.to_number, "from": job.from_number, "priority": job.priority,
            "max_attempts": job.max_attempts, "window": f"{job.window_start}-{job.window_end}",
            "time_zone": job.time_zone, "metadata": job.metadata_}  # fmt: skip


def _same_start(job: OutboundJob, not_before: datetime | None) -> bool:
    """Whether ``not_before`` (UTC; None: at once) is what ``job`` was queued with. The row keeps only when
    the next attempt is due, which the dispatcher moves (calling hours, retries); once it has, the time
    first asked for is no longer known and any ``not_before`` is taken as the same."""
    if job.attempts or job.updated_at != job.created_at:
        return True
    queued_for_now = job.next_attempt_at <= job.created_at
    if not_before is None or not_before <= job.created_at:
        return queued_for_now  # a time already past when the job was queued means at once, too
    return job.next_attempt_at == not_before
