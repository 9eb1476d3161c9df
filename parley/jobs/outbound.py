"""The outbound call queue: campaigns and call-backs, dialed within limits and calling hours, retried.

A job is a call owed to someone; each attempt at it is a ``calls`` row (``job_id``). The durable state is
the ``outbound_jobs`` table (``store/outbound.py``), and everything a crash must not lose is written there
before the carrier is asked for anything: the job is ``dialing`` and its call row exists before the REST
request, so a restarted process finds every attempt (``recover``) instead of dialing someone twice
because it forgot it already had.

    pending ──claim──▶ dialing ──outcome──▶ completed | canceled | exhausted | pending (retry, backoff)
       └──cancel──▶ canceled        └──cancel──▶ (canceled once the live call ends)

An attempt ends when the carrier reports the call's final status (the status webhook calls
``outcome``) or when the carrier refuses to place it (a failed attempt, with its error code recorded).
Before the carrier is asked, the attempt's agent version is made ready (``warm``: its models, prompt and
greeting), so the callee never picks up to silence; an agent that cannot be made ready in time fails the
attempt undialed (``agent_not_ready``), retried like a busy line. Each attempt runs as a task of its own,
apart from the dispatcher's loop: one whose agent is still warming holds up only its own job (and its
place in the caps), never the dialing of other due jobs.

What the queue checks on the way in has modules of its own: the rules a request must meet
(``job_input``), calling hours and time zones (``calling_window``), whether a repeated idempotency key
asks for the same call (``idempotency``); the job as callers see it is ``job_views``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.inputs import MAX_INT32, to_utc
from parley.jobs.calling_window import CallingWindow, checked_zone, window_check, zone_of
from parley.jobs.idempotency import refuse_a_different_call
from parley.jobs.job_input import InvalidOutboundJob, checked_metadata, e164, formatted
from parley.jobs.job_views import OutboundJobView, Queued, job_view
from parley.platform.agents import BrokenAgent, Conflict, NotFound
from parley.platform.phone import SERVER_UNAVAILABLE
from parley.platform.schemas import Page
from parley.store.agents import AgentRepository
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus, InvalidStatusTransition
from parley.store.models import Call, OutboundJob
from parley.store.outbound import CANCEL_REQUESTED, Caps, JobStatus, OutboundJobRepository
from parley.store.types import utcnow
from parley.telephony.number_rules import check_callee, is_premium_rate

if TYPE_CHECKING:
    from parley.platform.runtime import Platform

log = structlog.get_logger("parley.jobs.outbound")

PUBLIC_URL_REQUIRED = "PARLEY_PUBLIC_URL is required to place calls"
STALE_CLAIM = timedelta(minutes=2)
"""An attempt with no carrier call id this long after it was written died with its process (the REST
request takes seconds)."""
RECOVER_EVERY_S = 60.0
"""``run`` settles finished attempts this often too: a status callback sent while no server was up is
never resent, and recovery marks such calls failed only minutes later."""
WARM_LIMIT_S = 60.0
"""How long an attempt waits for its agent to be ready before it fails undialed (``agent_not_ready``): a
first load of models the server has not used yet takes seconds; far longer means it will not come. Well
under ``STALE_CLAIM``, after which recovery takes an attempt with no carrier call id for dead."""
AGENT_NOT_READY = "agent_not_ready"
MAX_ATTEMPTS_IN_FLIGHT = 100
"""Attempts one queue runs at once (their agents warming, or the carrier being asked): the most one claim
took when the dispatcher still waited for each pass's attempts, and its bound still, now that it does not.
Due jobs beyond it stay ``pending`` for a later pass."""


PERMANENT_REFUSALS = frozenset(
    f"twilio:{code}"
    for code in (
        21211,  # invalid 'To' phone number
        21214,  # 'To' phone number cannot be reached
        21215,  # geo permissions do not allow calls to this number
        21216,  # the number is blocked
        21217,  # not a valid phone number
        13224,  # invalid phone number for <Dial>/calls
    )
)
"""Carrier refusals no retry can change (https://www.twilio.com/docs/api/errors): the job fails at once."""


class Dialer(Protocol):
    """What the queue needs from the carrier (``telephony/rest.TwilioRest`` in production).

    ``place_call`` returns the carrier's call id; a refusal raises an exception carrying ``.code`` (the
    carrier's error code, an int: 21211 is an invalid number) and ``.message``."""

    async def place_call(
        self, *, to: str, from_: str, url: str, status_callback: str, amd_callback: str, timeout_s: int
    ) -> str: ...


AgentWarmer = Callable[[str, AgentConfig], Awaitable[None]]
"""Makes the agent version an attempt runs ready to talk for an organization (its models loaded and
warm, its prompt primed, its greeting synthesized), so the callee hears it the moment they answer; raises
when it cannot. The server's is its live runtime's (``server/telephony.py``)."""

SettledHook = Callable[[AsyncSession, OutboundJob, Call | None], Awaitable[None]]
"""Runs in the transaction that settles a job for good (completed, failed, exhausted, canceled), with the
job as settled and its last attempt's call (None when no call was made): a lead's call-back records its
outcome there (``platform/callbacks.py``). An exception rolls the settling back (recovery tries again)."""


def _call_status(status: CallStatus | str) -> CallStatus | None:
    """Our statuses, or Twilio's spelling of them (``no-answer``); None for Twilio's own intermediate
    ones (``initiated``, ``answered``), which end nothing."""
    try:
        return CallStatus(str(status).replace("-", "_"))
    except ValueError:
        return None


# --- the queue --------------------------------------------------------------------------------------


class OutboundQueue:
    def __init__(
        self,
        platform: Platform,
        settings: Settings,
        dialer: Dialer,
        *,
        on_settled: SettledHook | None = None,
        warm: AgentWarmer | None = None,
        warm_limit_s: float = WARM_LIMIT_S,
    ) -> None:
        """``on_settled``: default the platform's lead call-backs (``platform.callbacks.job_settled``).
        ``warm``: awaited (up to ``warm_limit_s``) before each attempt is dialed; None where no agent
        runs in this process (the queue is only read and canceled)."""
        self.platform = platform
        self.db = platform.db
        self.settings = settings
        self.dialer = dialer
        self.on_settled = on_settled if on_settled is not None else platform.callbacks.job_settled
        self.warm = warm
        self.warm_limit_s = warm_limit_s
        self._claiming = asyncio.Lock()
        self._wake = asyncio.Event()
        """Set when this process queues a job: ``run`` dispatches at once instead of at its next poll."""
        self._attempts: dict[asyncio.Task[None], str] = {}
        """Attempts under way, with their job's id (``MAX_ATTEMPTS_IN_FLIGHT`` at most): ``run`` does not
        wait for them, and ``recover`` leaves their jobs alone."""

    # --- the API's side -------------------------------------------------------------------------------

    async def enqueue(
        self,
        org_id: str,
        *,
        agent_ref: str,
        to: str,
        from_: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        not_before: datetime | None = None,
        window: str | None = None,
        time_zone: str | None = None,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> OutboundJobView:
        """``submit``, except that an ``idempotency_key`` already used by the organization gives back the
        job queued then, unchanged, whatever was asked this time: for callers that tell their own request
        from an earlier one (a lead's call-back puts a nonce in ``metadata``)."""
        queued = await self.submit(
            org_id,
            agent_ref=agent_ref,
            to=to,
            from_=from_,
            priority=priority,
            idempotency_key=idempotency_key,
            not_before=not_before,
            window=window,
            time_zone=time_zone,
            max_attempts=max_attempts,
            metadata=metadata,
            same_request=False,
        )
        return queued.job

    async def submit(
        self,
        org_id: str,
        *,
        agent_ref: str,
        to: str,
        from_: str | None = None,
        priority: int = 0,
        idempotency_key: str | None = None,
        not_before: datetime | None = None,
        window: str | None = None,
        time_zone: str | None = None,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
        same_request: bool = True,
    ) -> Queued:
        """Queue a call to ``to`` by the agent ``agent_ref`` (id or name). With an ``idempotency_key``
        already used by the organization, the job queued then (``created`` False) if this is the same
        request again, else ``IdempotencyConflict`` (``same_request=False``: that job regardless).

        ``to`` may not be premium-rate nor one of the organization's own numbers (``RefusedNumber``). The
        calling window (default ``PARLEY_OUTBOUND_CALLING_WINDOW``) is read in ``time_zone``, by
        default the callee's, from their number. A number whose range spans several zones (North
        American toll-free, Russian mobiles) or none has no single local time: its window is read in the
        organization's default zone, UTC; pass ``time_zone`` to say where the callee is. The caller id
        defaults to ``PARLEY_TWILIO_CALLER_ID``, else the organization's first phone number. Raises
        ``InvalidOutboundJob`` for bad input, ``NotFound`` for an unknown agent."""
        callee = e164(to, "to")
        if not -MAX_INT32 - 1 <= priority <= MAX_INT32:
            raise InvalidOutboundJob("priority is out of range")
        attempts = self.settings.outbound_max_attempts if max_attempts is None else max_attempts
        if not 1 <= attempts <= 20:
            raise InvalidOutboundJob("max_attempts must be between 1 and 20")
        if idempotency_key is not None and not (
            0 < len(idempotency_key) <= 200 and "\x00" not in idempotency_key
        ):
            raise InvalidOutboundJob("idempotency_key must be 1 to 200 characters, without NUL")
        hours = CallingWindow.parse(window or self.settings.outbound_calling_window)
        zone = checked_zone(time_zone) if time_zone is not None else zone_of(callee)
        data = checked_metadata(metadata or {})
        try:
            due = utcnow() if not_before is None else to_utc(not_before)
        except ValueError as exc:  # a time UTC cannot hold (year 1 east of Greenwich)
            raise InvalidOutboundJob(f"not_before: {exc}") from exc
        caller = formatted(e164(from_, "from")) if from_ is not None else None
        async with self.db.session() as session:
            agents = AgentRepository(session)
            agent = await agents.by_ref(org_id, agent_ref)
            if agent is None:
                raise NotFound(f"no agent {agent_ref!r}")
            jobs = OutboundJobRepository(session)
            if caller is None:
                caller = await self._default_caller_id(jobs, org_id)
            elif not await self._may_call_from(jobs, org_id, caller):
                # One Twilio account may carry several organizations: none may show another's number.
                raise InvalidOutboundJob(
                    f"from {caller} is not one of the organization's phone numbers (parley numbers list) "
                    "nor PARLEY_TWILIO_CALLER_ID"
                )
            to_number = formatted(callee)
            # A number we may call from is ours: dialing it rings our own webhook (agent to agent).
            check_callee(callee, own=await self._may_call_from(jobs, org_id, to_number))
            start, end = hours.bounds
            job, created = await jobs.create(
                org_id,
                agent_id=agent.id,
                to_number=to_number,
                from_number=caller,
                priority=priority,
                idempotency_key=idempotency_key,
                max_attempts=attempts,
                next_attempt_at=due,
                window_start=start,
                window_end=end,
                time_zone=zone,
                metadata=data,
            )
            if not created and same_request:
                asked = {"agent": agent.id, "to": to_number, "from": caller, "priority": priority,
                         "max_attempts": attempts, "window": f"{start}-{end}", "time_zone": zone,
                         "metadata": data}  # fmt: skip
                refuse_a_different_call(job, idempotency_key, asked, None if not_before is None else due)
            view = job_view(job)
        if created:
            log.info("outbound call queued", job_id=view.id, org_id=org_id, to=view.to_number, time_zone=zone)
            self._wake.set()
        return Queued(view, created)

    def _configured_caller_id(self) -> str | None:
        """``PARLEY_TWILIO_CALLER_ID`` in E.164, if set (``InvalidOutboundJob`` if it is no number)."""
        configured = self.settings.twilio_caller_id
        return formatted(e164(configured, "PARLEY_TWILIO_CALLER_ID")) if configured else None

    async def _may_call_from(self, jobs: OutboundJobRepository, org_id: str, caller: str) -> bool:
        with contextlib.suppress(InvalidOutboundJob):
            if self._configured_caller_id() == caller:
                return True
        return await jobs.owns_number(org_id, caller)

    async def _default_caller_id(self, jobs: OutboundJobRepository, org_id: str) -> str:
        try:
            configured = self._configured_caller_id()
        except InvalidOutboundJob as exc:
            raise InvalidOutboundJob(f"{exc}: fix the setting or pass from") from None
        if configured is not None:
            return configured
        number = await jobs.first_number(org_id)
        if number is None:
            raise InvalidOutboundJob(
                "no number to call from: pass from, set PARLEY_TWILIO_CALLER_ID, or add a phone number"
            )
        return number

    async def get(self, org_id: str, job_id: str) -> OutboundJobView:
        async with self.db.session() as session:
            job = await OutboundJobRepository(session).get(job_id, org_id)
            if job is None:
                raise NotFound(f"no outbound job {job_id!r}")
            return job_view(job)

    async def page(
        self, org_id: str, status: str | None = None, limit: int = 50, cursor: str | None = None
    ) -> Page[OutboundJobView]:
        """Newest first; ``cursor`` is the previous page's ``next_cursor``."""
        if status is not None and status not in {s.value for s in JobStatus}:
            raise InvalidOutboundJob(f"unknown job status {status!r}")
        async with self.db.session() as session:
            jobs, next_cursor = await OutboundJobRepository(session).page(org_id, status, limit, cursor)
            return Page[OutboundJobView](data=[job_view(j) for j in jobs], next_cursor=next_cursor)

    async def cancel(self, org_id: str, job_id: str) -> OutboundJobView:
        """A pending job is canceled at once. A dialing one is marked and becomes ``canceled`` when its
        call ends; the caller hangs that call up (the view's ``last_call_id``). A job already canceled is
        returned as is; one that already ended otherwise is a ``Conflict``."""
        async with self.db.session() as session:
            jobs = OutboundJobRepository(session)
            for _ in range(3):  # the dispatcher or an outcome may move the job between read and write
                job = await jobs.get(job_id, org_id)
                if job is None:
                    raise NotFound(f"no outbound job {job_id!r}")
                status = JobStatus(job.status)
                if status is JobStatus.CANCELED or job.last_outcome == CANCEL_REQUESTED:
                    return job_view(job)
                if status.final:
                    raise Conflict(f"outbound job {job_id} already ended ({status.value})")
                if status is JobStatus.PENDING:
                    done = await jobs.transition(
                        job.id, expect=(JobStatus.PENDING,), status=JobStatus.CANCELED
                    )
                    if done:
                        canceled = await jobs.get(job_id)
                        assert canceled is not None
                        await self.on_settled(session, canceled, None)
                else:
                    done = await jobs.transition(
                        job.id,
                        expect=(JobStatus.DIALING,),
                        call_id=job.last_call_id,
                        last_outcome=CANCEL_REQUESTED,
                    )
                if done:
                    job = await jobs.get(job_id)
                    assert job is not None
                    log.info("outbound job canceled", job_id=job_id, org_id=org_id, was=status.value)
                    return job_view(job)
        raise Conflict(f"outbound job {job_id} kept changing; try again")

    # --- the carrier's side ---------------------------------------------------------------------------

    async def outcome(
        self, call_id: str, status: CallStatus | str, *, at: datetime | None = None
    ) -> OutboundJobView | None:
        """An attempt's final status (the status webhook, a refused REST request, recovery) settles its
        job: completed or answered → ``completed`` (but not one this server hung up on as it was answered,
        ``server_unavailable``); canceled → ``canceled``; busy, no answer or failed → retried
        ``outbound_retry_backoff_s[attempt-1]`` after ``at`` (the last figure repeats) until
        ``max_attempts``, then ``exhausted``. The call's stored final status wins over ``status``.

        Idempotent: a repeated or late outcome (the job already moved on) changes nothing. Returns the
        job, or None when the call is no attempt of one (or its status is not final)."""
        final = _call_status(status)
        if final is None or not final.terminal:
            return None
        now = at or utcnow()
        async with self.db.session() as session:
            call = await CallRepository(session).get(call_id)
            if call is None or call.job_id is None:
                return None
            jobs = OutboundJobRepository(session)
            job = await jobs.get(call.job_id)
            if job is None:
                return None
            if job.status != JobStatus.DIALING or job.last_call_id != call_id:
                return job_view(job)  # settled already, or a late callback of an earlier attempt
            stored = CallStatus(call.status)
            if stored.terminal:
                final = stored
            recorded = f"{final.value}:{call.end_reason}" if call.end_reason else final.value
            changes: dict[str, Any] = {"last_outcome": recorded[:64]}
            if job.last_outcome == CANCEL_REQUESTED or final is CallStatus.CANCELED:
                changes["status"] = JobStatus.CANCELED
            elif (final is CallStatus.COMPLETED or call.started_at is not None) and (
                call.end_reason != SERVER_UNAVAILABLE
            ):
                # Answered: the callee was reached, even if the line then failed (the outcome says so).
                # One this server hung up on as it answered (draining) heard nobody: that is retried.
                changes["status"] = JobStatus.COMPLETED
            elif (call.end_reason or "") in PERMANENT_REFUSALS:
                changes["status"] = JobStatus.FAILED  # another attempt cannot go differently
            elif job.attempts >= job.max_attempts:
                changes["status"] = JobStatus.EXHAUSTED
            else:
                changes["status"] = JobStatus.PENDING
                changes["next_attempt_at"] = now + timedelta(seconds=self._backoff(job.attempts))
            won = await jobs.transition(job.id, expect=(JobStatus.DIALING,), call_id=call_id, **changes)
            settled = await jobs.get(job.id)
            assert settled is not None
            view = job_view(settled)
            if won and view.status.final:
                await self.on_settled(session, settled, call)
        log.info(
            "outbound attempt ended",
            job_id=view.id,
            call_id=call_id,
            attempt=view.attempts,
            outcome=recorded,
            status=view.status.value,
        )
        return view

    def _backoff(self, attempt: int) -> float:
        delays = self.settings.outbound_retry_backoff_s
        return delays[min(attempt, len(delays)) - 1] if delays else 0.0

    # --- the dispatcher -------------------------------------------------------------------------------

    async def dispatch_once(self, at: datetime | None = None) -> int:
        """One pass: claim the due jobs the caps and calling windows allow and place an attempt for each,
        returning once every one of them is placed or ended (``run`` does not wait: see ``_start_due``).
        Returns how many attempts were started."""
        started = await self._start_due(at)
        await asyncio.gather(*started)  # each attempt logs its own failure (``_attempt_logged``)
        return len(started)

    async def _start_due(self, at: datetime | None = None) -> list[asyncio.Task[None]]:
        """Claim the due jobs and start an attempt for each as a task of its own: an attempt whose agent
        takes long to warm then delays no other job, since the next pass claims and dials those while it
        waits. The caps count it as dialing meanwhile, and ``MAX_ATTEMPTS_IN_FLIGHT`` bounds the tasks."""
        now = at or utcnow()
        caps = Caps(self.settings.outbound_org_concurrency, self.settings.outbound_number_concurrency)
        started: list[asyncio.Task[None]] = []
        async with self._claiming:  # the room left and the tasks started are counted under one lock
            room = MAX_ATTEMPTS_IN_FLIGHT - len(self._attempts)
            if room <= 0:
                return started
            async with self.db.session() as session:
                claim = await OutboundJobRepository(session).claim(now, caps, window_check, limit=room)
            for job in claim.claimed:
                task = asyncio.create_task(self._attempt_logged(job, now), name=f"outbound-attempt-{job.id}")
                self._attempts[task] = job.id
                task.add_done_callback(self._attempt_done)
                started.append(task)
        for job in claim.postponed:
            log.info("outside the callee's calling hours", job_id=job.id, next_attempt_at=job.next_attempt_at)
        return started

    def _attempt_done(self, task: asyncio.Task[None]) -> None:
        """A full queue passed over due jobs: look again now that there is room."""
        full = len(self._attempts) >= MAX_ATTEMPTS_IN_FLIGHT
        self._attempts.pop(task, None)
        if full:
            self._wake.set()

    async def _attempt_logged(self, job: OutboundJob, now: datetime) -> None:
        """``_attempt``, as a task nobody awaits for its result: a failure is logged (the job stays
        ``dialing`` until recovery settles it)."""
        try:
            await self._attempt(job, now)
        except Exception as exc:
            log.error(
                "placing an outbound attempt failed", job_id=job.id, call_id=job.last_call_id, exc_info=exc
            )

    async def _attempt(self, job: OutboundJob, now: datetime) -> None:
        bound = log.bind(job_id=job.id, org_id=job.org_id, attempt=job.attempts)
        if job.agent_id is None or job.from_number is None:
            await self._unplaceable(job, "agent_deleted" if job.agent_id is None else "no_caller_id")
            return
        if is_premium_rate(job.to_number):  # queued before such numbers were refused: never dialed now
            await self._unplaceable(job, "premium_rate")
            return
        try:
            call, agent = await self.platform.calls.create(
                job.org_id,
                direction="outbound",
                transport="twilio",
                agent_ref=job.agent_id,
                from_number=job.from_number,
                to_number=job.to_number,
                job_id=job.id,
                metadata=job.metadata_,
            )
        except NotFound:
            await self._unplaceable(job, "agent_deleted")
            return
        except BrokenAgent as exc:  # its stored version stopped loading after the job was queued
            bound.warning("the job's agent cannot run", error=str(exc))
            await self._unplaceable(job, "agent_unloadable")
            return
        async with self.db.session() as session:
            jobs = OutboundJobRepository(session)
            linked = await jobs.transition(
                job.id, expect=(JobStatus.DIALING,), call_id=None, last_call_id=call.id
            )
            current = await jobs.get(job.id)
        if not linked or current is None:
            bound.warning("the job moved on before its call was placed", call_id=call.id)
            await self._end_attempt(call.id, CallStatus.CANCELED, "job_moved_on", now)
            return
        if current.last_outcome == CANCEL_REQUESTED:
            await self._end_attempt(call.id, CallStatus.CANCELED, "job_canceled", now)
            return
        if not self.settings.public_url:
            bound.error(PUBLIC_URL_REQUIRED, call_id=call.id)
            await self._end_attempt(call.id, CallStatus.FAILED, PUBLIC_URL_REQUIRED, now)
            return
        if not await self._agent_ready(job, call.id, agent, now):
            return
        base = self.settings.public_url.rstrip("/")
        try:
            sid = await self.dialer.place_call(
                to=job.to_number,
                from_=job.from_number,
                url=f"{base}/twilio/voice?call_id={call.id}",
                # call_id in the callbacks too: Twilio may report progress before place_call returns
                # the CallSid we would otherwise find the call by.
                status_callback=f"{base}/twilio/status?call_id={call.id}",
                amd_callback=f"{base}/twilio/amd?call_id={call.id}",
                timeout_s=self.settings.outbound_ring_timeout_s,
            )
        except Exception as exc:  # any refusal is a failed attempt, retried; the reason keeps the code
            code = getattr(exc, "code", None)
            message = getattr(exc, "message", None) or str(exc)
            if isinstance(code, int):
                bound.warning("the carrier refused the call", call_id=call.id, code=code, error=message)
                reason = f"twilio:{code}"
            else:
                bound.error("placing the call failed", call_id=call.id, error=message, exc_info=exc)
                reason = "dialer_error"
            await self._end_attempt(call.id, CallStatus.FAILED, reason, now)
            return
        async with self.db.session() as session:
            await session.execute(update(Call).where(Call.id == call.id).values(provider_call_id=sid))
        bound.info("outbound call placed", call_id=call.id, provider_call_id=sid, to=job.to_number)

    async def _agent_ready(
        self, job: OutboundJob, call_id: str, agent: AgentConfig | None, now: datetime
    ) -> bool:
        """Make the attempt's agent ready before its call is placed: a callee who answers while the models
        warm hears silence and hangs up (a machine records it). False when the attempt ended instead:
        the agent could not be made ready in time (failed, retried), or the job was canceled meanwhile."""
        if self.warm is None or agent is None:
            return True
        bound = log.bind(job_id=job.id, call_id=call_id, agent=agent.name)
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(self.warm_limit_s):
                await self.warm(job.org_id, agent)
        except TimeoutError:
            bound.error("the call's agent was not ready in time: not dialed", limit_s=self.warm_limit_s)
            await self._end_attempt(call_id, CallStatus.FAILED, AGENT_NOT_READY, now)
            return False
        except Exception as exc:  # models that failed to load: the log says why
            bound.error("the call's agent could not be made ready: not dialed", error=repr(exc), exc_info=exc)
            await self._end_attempt(call_id, CallStatus.FAILED, AGENT_NOT_READY, now)
            return False
        waited = asyncio.get_running_loop().time() - started
        if waited > 1.0:
            bound.info("the call's agent is ready", waited_s=round(waited, 2))
        async with self.db.session() as session:
            current = await OutboundJobRepository(session).get(job.id)
        if current is None or current.last_outcome == CANCEL_REQUESTED:  # canceled while it warmed
            await self._end_attempt(call_id, CallStatus.CANCELED, "job_canceled", now)
            return False
        return True

    async def _unplaceable(self, job: OutboundJob, why: str) -> None:
        """A job no attempt can ever succeed for (its agent was deleted or no longer loads, its number
        is premium-rate): failed, not retried."""
        async with self.db.session() as session:
            jobs = OutboundJobRepository(session)
            if await jobs.transition(
                job.id, expect=(JobStatus.DIALING,), call_id=None, status=JobStatus.FAILED, last_outcome=why
            ):
                failed = await jobs.get(job.id)
                assert failed is not None
                await self.on_settled(session, failed, None)
        log.warning("outbound job cannot be placed", job_id=job.id, org_id=job.org_id, reason=why)

    async def _end_attempt(
        self, call_id: str, status: CallStatus, reason: str, at: datetime
    ) -> OutboundJobView | None:
        """End an attempt the carrier never took (or refused): on the books, then for its job."""
        try:
            await self.platform.calls.set_status(call_id, status, reason=reason[:64])
        except InvalidStatusTransition as exc:  # the call already ended otherwise: its status stands
            log.warning("attempt's call already ended", call_id=call_id, error=str(exc))
        return await self.outcome(call_id, status, at=at)

    # --- crash recovery and the loop ------------------------------------------------------------------

    async def recover(self, at: datetime | None = None) -> int:
        """Settle ``dialing`` jobs a dead process (or a missed status callback) left behind; returns how
        many. An attempt whose call ended is settled by its outcome. One claimed but never linked to a
        call, or whose call never got a carrier id (the process died around the REST request), is
        abandoned after ``STALE_CLAIM``: unlinked claims go back to ``pending`` (the carrier never heard
        of them), unconfirmed calls end ``failed: interrupted`` (no stream can attach to a call without
        a carrier id, so nobody is talking to the agent) and are retried. Jobs this queue is still
        placing (``run`` no longer waits for its attempts) are left to their attempt."""
        now = at or utcnow()
        stale_before = now - STALE_CLAIM
        async with self.db.session() as session:
            dialing = await OutboundJobRepository(session).dialing()
        settled = 0
        attempting = set(self._attempts.values())
        for job in dialing:
            if job.id in attempting:  # still being placed by this process: not abandoned
                continue
            try:
                if await self._recover_one(job, now, stale_before):
                    settled += 1
            except Exception:  # one broken job must not keep the others stuck
                log.exception("recovering an outbound job failed", job_id=job.id, call_id=job.last_call_id)
        if settled:
            log.warning("settled outbound attempts left dialing", jobs=settled)
        return settled

    async def _recover_one(self, job: OutboundJob, now: datetime, stale_before: datetime) -> bool:
        if job.last_call_id is None:
            if job.updated_at > stale_before:
                return False  # another worker may be placing it right now
            async with self.db.session() as session:
                orphans = await session.scalars(
                    select(Call.id).where(
                        Call.job_id == job.id,
                        Call.status == CallStatus.QUEUED.value,
                        Call.provider_call_id.is_(None),
                    )
                )
                orphan_ids = list(orphans.all())
                reverted = await OutboundJobRepository(session).transition(
                    job.id,
                    expect=(JobStatus.DIALING,),
                    call_id=None,
                    status=JobStatus.PENDING,
                    attempts=max(job.attempts - 1, 0),
                )
            for orphan in orphan_ids:
                await self.platform.calls.set_status(orphan, CallStatus.CANCELED, reason="interrupted")
            return reverted
        async with self.db.session() as session:
            call = await CallRepository(session).get(job.last_call_id)
        if call is None:
            return False
        status = CallStatus(call.status)
        if status.terminal:
            await self.outcome(call.id, status, at=now)
            return True
        if status is CallStatus.QUEUED and call.provider_call_id is None and call.updated_at <= stale_before:
            await self._end_attempt(call.id, CallStatus.FAILED, "interrupted", now)
            return True
        return False  # ringing or talking: its status callback will settle it

    async def run(self) -> None:
        """Dispatch every ``outbound_poll_s`` (and as soon as this process queues a job) until cancelled,
        after settling what a previous process left. A pass starts its attempts and moves on without
        waiting for them (an agent may take up to ``warm_limit_s`` to warm); cancelling ``run`` cancels
        those still under way, which recovery then settles like any attempt a stopped process left."""
        loop = asyncio.get_running_loop()
        try:
            await self._step("recover", self.recover)
            recovered_at = loop.time()
            while True:
                await self._step("dispatch", self._start_due)
                if loop.time() - recovered_at >= RECOVER_EVERY_S:
                    await self._step("recover", self.recover)
                    recovered_at = loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.settings.outbound_poll_s)
                self._wake.clear()
        finally:
            under_way = list(self._attempts)
            for task in under_way:
                task.cancel()
            await asyncio.gather(*under_way, return_exceptions=True)

    async def _step(self, name: str, action: Callable[[], Awaitable[object]]) -> None:
        try:
            await action()
        except Exception:  # a database hiccup must not stop the queue; the next pass tries again
            log.exception("outbound queue step failed", step=name)
