"""AI call-backs of leads: asked for by a business (API, CLI, the signed link in its email, its leads
page) or for the lead, placed by the outbound queue, and reported back to the business.

Asking (``request``) checks the lead's consent (a lead without it is never called: ``NoConsent``, 409),
picks the business's agent and queues one outbound job per lead (idempotency key
``lead-callback:<lead id>``: asking again, by anyone, returns that job). The job's metadata carries the
lead (``lead_id``, ``caller_name``, ``description``, ``category``, ``business_name``, ``time_zone`` …), so
the agent's prompt can say ``{{caller.name}}`` and ``{{metadata.description}}``, and its calling window is
read in the lead's time zone. The lead becomes ``callback_queued``.

Reporting runs in the transactions that settle the job and that store the call's post-call analysis
(``job_settled``, ``call_analyzed``: hooks of the outbound queue and of the analysis service), so the
outcome on the lead and the email owed to the business (a ``callback_outcome`` row of the leads outbox)
are written exactly when the facts they report are. When the job ends, the outcome (answered, voicemail,
no answer, busy, failed; the call, a transcript excerpt) is recorded; if the call's analysis is still to
come, the lead waits for it and the analysis hook finishes the outcome with its summary and structured
data. Whichever of the two commits last finishes the lead (the lead row is locked on PostgreSQL; SQLite has
one writer), and the email's unique key (lead, business, kind, channel) means it is written once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, Protocol

import structlog
from pydantic import BaseModel, Field
from sqlalchemy import event, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.platform.agents import Conflict, NotFound
from parley.store.analyses import AnalysisStatus
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.leads import LeadRepository
from parley.store.models import Business, Call, CallAnalysisRecord, Lead, LeadMatch, OutboundJob
from parley.store.types import utcnow

log = structlog.get_logger("parley.platform.callbacks")

RequestedBy = Literal["api", "cli", "email_link", "business_page", "lead"]
Result = Literal["answered", "voicemail", "no_answer", "busy", "failed", "canceled"]
REACHED: frozenset[str] = frozenset({"answered", "voicemail"})
RESULT_WORDS: dict[str, str] = {
    "answered": "answered",
    "voicemail": "answering machine",
    "no_answer": "no answer",
    "busy": "busy",
    "failed": "could not be placed",
    "canceled": "canceled",
}
"""How the business's email words each result (``outcome.status``)."""
OPEN_STATUSES = ("matched", "unmatched")
"""A lead in one of these has had no call-back asked for yet."""
JOB_FINAL = frozenset({"completed", "failed", "canceled", "exhausted"})
ANALYSIS_DONE = frozenset({AnalysisStatus.COMPLETED, AnalysisStatus.FAILED, AnalysisStatus.SKIPPED})
TRANSCRIPT_LINES = 40
TRANSCRIPT_CHARS = 4000
"""The transcript excerpt kept on the lead: the first lines of the call, this many at most."""


class CallbackRefused(Conflict):
    """A call-back that cannot be asked for (409); the message says why and what would change it."""


class NoConsent(CallbackRefused):
    pass


class NoAgent(CallbackRefused):
    pass


class QueuedJob(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def metadata(self) -> dict[str, Any]: ...


class CallQueue(Protocol):
    """What asking needs of the outbound queue (``jobs/outbound.OutboundQueue``, a layer above)."""

    async def enqueue(
        self,
        org_id: str,
        *,
        agent_ref: str,
        to: str,
        idempotency_key: str | None = None,
        time_zone: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> QueuedJob: ...


class CallbackOut(BaseModel):
    lead_id: str
    business_id: str = Field(description="the business the call is made for (its agent calls)")
    job_id: str = Field(description="the outbound job: /v1/outbound-jobs/{job_id}")
    status: str = Field(description="the lead's status: callback_queued, then called or callback_failed")
    created: bool = Field(description="false: a call-back was asked for already; this is that one")
    requested_by: str


def callback_key(lead_id: str) -> str:
    """The outbound job's idempotency key: one call-back per lead."""
    return f"lead-callback:{lead_id}"


def call_result(call: Call | None, job_status: str | None = None) -> Result:
    """What became of the call-back, as the business would say it: ``canceled`` when its job was canceled
    (before a call, or while the callee was on the line), else what the last attempt's call came to."""
    if job_status == "canceled":
        return "canceled"
    if call is None:
        return "failed"
    answered_by = call.answered_by or ""
    if answered_by.startswith("machine_") or answered_by == "fax":
        return "voicemail"
    if call.started_at is not None or call.status == "completed":
        return "answered"
    endings: dict[str, Result] = {"busy": "busy", "no_answer": "no_answer", "canceled": "canceled"}
    return endings.get(call.status, "failed")


class CallbackService:
    def __init__(self, db: Database, *, wake: Callable[[], Callable[[], None] | None] | None = None) -> None:
        """``wake`` gives the notification worker's wake-up (or None), called after an outcome email is
        committed."""
        self.db = db
        self.wake = wake

    # --- asking -----------------------------------------------------------------------------------------

    async def request(
        self,
        queue: CallQueue,
        org_id: str,
        lead_id: str,
        *,
        business_id: str | None,
        requested_by: RequestedBy,
    ) -> CallbackOut:
        """Queue the call-back of a lead for one of the businesses it was matched to (None: the nearest
        with an agent). Raises ``NotFound`` (lead, or a business it was not matched to), ``NoConsent``,
        ``NoAgent`` or ``CallbackRefused`` (e.g. no number to call from)."""
        async with self.db.session() as session:
            lead = await session.scalar(select(Lead).where(Lead.id == lead_id, Lead.org_id == org_id))
            if lead is None:
                raise NotFound(f"no lead {lead_id}")
            if not lead.consent_to_call:
                raise NoConsent(
                    f"lead {lead_id} did not agree to be called, so it is never called back; "
                    "reply by email instead"
                )
            existing = await session.scalar(
                select(OutboundJob).where(
                    OutboundJob.org_id == org_id, OutboundJob.idempotency_key == callback_key(lead_id)
                )
            )
            if existing is not None:
                if lead.status in OPEN_STATUSES and existing.status not in JOB_FINAL:
                    # an earlier request queued the job but stopped before marking the lead
                    lead.status, lead.updated_at = "callback_queued", utcnow()
                return _out(lead, existing.id, existing.metadata_, created=False)
            business = await self._business(session, lead, business_id)
            if business.agent_id is None:
                raise NoAgent(
                    f"business {business.id} has no agent to call its leads back (set its agent_id)"
                )
            agent_id, phone, zone = business.agent_id, lead.phone, lead.time_zone
            nonce = uuid.uuid4().hex
            metadata: dict[str, Any] = {
                "lead_id": lead.id,
                "business_id": business.id,
                "caller_name": lead.name,
                "description": lead.description,
                "category": lead.category,
                "business_name": business.name,
                "postal_code": lead.postal_code,
                "requested_by": requested_by,
                "request": nonce,
            }
            if zone:
                metadata["time_zone"] = zone
        try:
            job = await queue.enqueue(
                org_id,
                agent_ref=agent_id,
                to=phone,
                idempotency_key=callback_key(lead_id),
                time_zone=zone,
                metadata=metadata,
            )
        except (NotFound, Conflict):
            raise
        except ValueError as exc:  # the queue refused the call (no number to call from …)
            raise CallbackRefused(f"the call-back cannot be queued: {exc}") from exc
        async with self.db.session() as session:
            await session.execute(
                update(Lead)
                .where(Lead.id == lead_id, Lead.status.in_(OPEN_STATUSES))
                .values(status="callback_queued", updated_at=utcnow())
            )
            lead = await session.scalar(select(Lead).where(Lead.id == lead_id))
            assert lead is not None
        created = job.metadata.get("request") == nonce
        if created:
            log.info(
                "lead call-back queued",
                org_id=org_id,
                lead_id=lead_id,
                business_id=metadata["business_id"],
                job_id=job.id,
                requested_by=requested_by,
            )
        return _out(lead, job.id, job.metadata, created=created)

    async def _business(self, session: AsyncSession, lead: Lead, business_id: str | None) -> Business:
        matched = list(
            await session.scalars(
                select(LeadMatch.business_id)
                .where(LeadMatch.lead_id == lead.id)
                .order_by(LeadMatch.distance_km.is_(None), LeadMatch.distance_km, LeadMatch.business_id)
            )
        )
        if business_id is not None:
            if business_id not in matched:
                raise NotFound(f"lead {lead.id} was not sent to business {business_id}")
            candidates = [business_id]
        elif not matched:
            raise CallbackRefused(f"lead {lead.id} matched no business: no agent is there to call it back")
        else:
            candidates = matched
        rows = {
            row.id: row
            for row in await session.scalars(
                select(Business).where(Business.id.in_(candidates), Business.org_id == lead.org_id)
            )
        }
        found = [rows[ident] for ident in candidates if ident in rows]
        if not found:
            raise NotFound(f"business {business_id} is gone")
        with_agent = [business for business in found if business.agent_id is not None]
        return with_agent[0] if with_agent else found[0]

    # --- reporting: hooks in the transactions that settle a job and store an analysis ------------------

    async def job_settled(self, session: AsyncSession, job: OutboundJob, call: Call | None) -> None:
        """The outbound queue settled ``job`` for good (completed, failed, exhausted, canceled): record
        the call-back's outcome on its lead, if it is one; finish it unless the call's analysis is due."""
        lead = await _locked_lead(session, job)
        if lead is None or lead.status not in ("callback_queued", *OPEN_STATUSES):
            return
        analysis = await _analysis(session, call.id) if call is not None else None
        outcome = await _outcome(session, job, call, analysis)
        if analysis is not None and AnalysisStatus(analysis.status) not in ANALYSIS_DONE:
            lead.outcome = outcome
            lead.status = "callback_queued"
            lead.updated_at = utcnow()
            log.info("call-back ended; its analysis is awaited", lead_id=lead.id, job_id=job.id)
            return
        await self._finish(session, lead, job, call, outcome)

    async def call_analyzed(self, session: AsyncSession, org_id: str, payload: dict[str, Any]) -> None:
        """A call's post-call analysis was stored (or given up): if the call was a lead's call-back whose
        job has ended, finish the lead with it (a rerun later only refreshes the outcome's analysis)."""
        call = await CallRepository(session).get(str(payload.get("call_id", "")))
        if call is None or call.job_id is None:
            return
        job = await session.get(OutboundJob, call.job_id)
        if job is None:
            return
        lead = await _locked_lead(session, job)
        if lead is None:
            return
        # Read after the lock: on PostgreSQL the job's settling may have committed while we waited.
        job = await session.scalar(
            select(OutboundJob).where(OutboundJob.id == job.id).execution_options(populate_existing=True)
        )
        if job is None:
            return
        analysis = await _analysis(session, call.id)
        if lead.status == "callback_queued" and job.status in JOB_FINAL and job.last_call_id == call.id:
            await self._finish(session, lead, job, call, await _outcome(session, job, call, analysis))
        elif lead.status in ("called", "callback_failed") and (lead.outcome or {}).get("call_id") == call.id:
            lead.outcome = {**(lead.outcome or {}), **_analysis_parts(analysis)}
            lead.updated_at = utcnow()

    async def _finish(
        self, session: AsyncSession, lead: Lead, job: OutboundJob, call: Call | None, outcome: dict[str, Any]
    ) -> None:
        lead.outcome = outcome
        # Reached is what the call came to: a call-back canceled while the lead talked still reached them.
        lead.status = "called" if call_result(call) in REACHED else "callback_failed"
        lead.updated_at = utcnow()
        business_id = job.metadata_.get("business_id")
        business = await session.get(Business, business_id) if isinstance(business_id, str) else None
        if business is not None:
            await LeadRepository(session).enqueue_notifications(
                lead.org_id,
                lead.id,
                [
                    {
                        "business_id": business.id,
                        "kind": "callback_outcome",
                        "channel": "email",
                        "recipient": business.notify_email,
                    }
                ],
            )
            wake = self.wake() if self.wake is not None else None
            if wake is not None:
                event.listen(session.sync_session, "after_commit", lambda _s: wake(), once=True)
        else:
            log.warning("the business of a call-back is gone: nobody is told", lead_id=lead.id, job_id=job.id)
        log.info(
            "lead call-back finished",
            org_id=lead.org_id,
            lead_id=lead.id,
            job_id=job.id,
            result=outcome["result"],
            status=lead.status,
        )


def _out(lead: Lead, job_id: str, metadata: dict[str, Any], *, created: bool) -> CallbackOut:
    return CallbackOut(
        lead_id=lead.id,
        business_id=str(metadata.get("business_id", "")),
        job_id=job_id,
        status=lead.status,
        created=created,
        requested_by=str(metadata.get("requested_by", "")),
    )


async def _locked_lead(session: AsyncSession, job: OutboundJob) -> Lead | None:
    """The lead a job calls back, locked for this transaction (PostgreSQL; SQLite has one writer)."""
    lead_id = (job.metadata_ or {}).get("lead_id")
    if not isinstance(lead_id, str) or job.idempotency_key != callback_key(lead_id):
        return None  # an ordinary outbound job, or metadata someone else wrote
    return await session.scalar(
        select(Lead)
        .where(Lead.id == lead_id, Lead.org_id == job.org_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def _analysis(session: AsyncSession, call_id: str) -> CallAnalysisRecord | None:
    """The call's analysis as committed now (read after the lead's lock)."""
    return await session.scalar(
        select(CallAnalysisRecord)
        .where(CallAnalysisRecord.call_id == call_id)
        .execution_options(populate_existing=True)
    )


def _analysis_parts(analysis: CallAnalysisRecord | None) -> dict[str, Any]:
    if analysis is None:
        return {"analysis": None}
    done = analysis.status == AnalysisStatus.COMPLETED
    return {
        "analysis": analysis.status,
        "summary": analysis.summary if done else None,
        "structured_data": analysis.structured_data if done else None,
        "success": analysis.success if done else None,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


async def _outcome(
    session: AsyncSession, job: OutboundJob, call: Call | None, analysis: CallAnalysisRecord | None
) -> dict[str, Any]:
    result = call_result(call, job.status)
    transcript: list[dict[str, str]] = []
    if call is not None and call.started_at is not None:
        size = 0
        for turn in (await CallRepository(session).turns(call.id))[:TRANSCRIPT_LINES]:
            text = turn.text.strip()
            if not text:
                continue
            text = text[: max(0, TRANSCRIPT_CHARS - size)]
            if not text:
                break
            size += len(text)
            transcript.append({"speaker": turn.speaker, "text": text})
    duration = None
    if call is not None and call.started_at is not None and call.ended_at is not None:
        duration = round((call.ended_at - call.started_at).total_seconds(), 1)
    return {
        "result": result,
        "status": "voicemail left"
        if result == "voicemail" and call is not None and call.end_reason == "voicemail_left"
        else RESULT_WORDS[result],
        "job_id": job.id,
        "job_status": job.status,
        "attempts": job.attempts,
        "business_id": job.metadata_.get("business_id"),
        "requested_by": job.metadata_.get("requested_by"),
        "call_id": call.id if call is not None else None,
        "call_status": call.status if call is not None else None,
        "end_reason": call.end_reason if call is not None else job.last_outcome,
        "answered_by": call.answered_by if call is not None else None,
        "duration_s": duration,
        "ended_at": _iso(call.ended_at if call is not None else job.updated_at),
        "transcript": transcript,
        **_analysis_parts(analysis),
    }
