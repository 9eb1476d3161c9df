"""Outbound phone calls: ``POST /v1/calls`` queues one, ``/v1/outbound-jobs`` follows and cancels them,
and ``POST /v1/calls/{id}/hangup`` ends a live phone call."""

from __future__ import annotations

from typing import Annotated

import structlog
from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from parley.jobs.idempotency import IdempotencyConflict
from parley.jobs.job_input import InvalidOutboundJob
from parley.jobs.job_views import OutboundJobView
from parley.jobs.outbound import OutboundQueue
from parley.platform.agents import BrokenAgent, Conflict, NotFound
from parley.platform.schemas import CallSummary, OutboundCallCreate, Page
from parley.server.auth import Auth, PlatformDep
from parley.server.routes.params import CursorQ, Limit, Ref
from parley.server.routes.twilio import live_session, twilio_rest
from parley.store.lifecycle import CallStatus
from parley.store.queries import InvalidCursor
from parley.telephony.number_rules import RefusedNumber
from parley.telephony.rest import NOT_FOUND, TwilioRest, TwilioRestError

log = structlog.get_logger("parley.server.outbound")

router = APIRouter(tags=["outbound calls"])

_NOT_CONFIGURED = (
    "Twilio is not configured on this server (PARLEY_TWILIO_ACCOUNT_SID, PARLEY_TWILIO_AUTH_TOKEN)"
)


def _queue(request: Request) -> OutboundQueue:
    queue: OutboundQueue | None = getattr(request.app.state, "outbound", None)
    if queue is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the outbound queue is not running here")
    return queue


def _rest(request: Request) -> TwilioRest:
    rest = twilio_rest(request)
    if rest is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, _NOT_CONFIGURED)
    return rest


@router.post(
    "/v1/calls",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"description": "the idempotency key had queued this same call already: that job"},
        404: {"description": "no such agent"},
        409: {
            "description": "the idempotency key was used for a different call, or the agent's stored "
            "configuration no longer loads (fix it with a PATCH first)"
        },
        422: {
            "description": "a number, window or time zone that cannot be used; `to` premium-rate or one "
            "of the organization's own numbers"
        },
        503: {"description": "Twilio is not configured"},
    },
)
async def place_call(
    body: OutboundCallCreate, request: Request, response: Response, principal: Auth, platform: PlatformDep
) -> OutboundJobView:
    """Queue a phone call by an agent. The job is dialed when due, within the callee's calling hours
    and the organization's concurrency, and retried when busy, unanswered or failed; follow it at
    ``/v1/outbound-jobs/{id}`` (each attempt is a call: ``last_call_id``). An agent whose stored
    configuration no longer loads is a 409 naming it, and nothing is queued."""
    _rest(request)  # refuse now rather than queue a call nobody here can place
    try:
        # Refused now rather than queued to fail at every attempt.
        await platform.agents.check_runnable(principal.org_id, body.agent)
        queued = await _queue(request).submit(
            principal.org_id,
            agent_ref=body.agent,
            to=body.to,
            from_=body.from_,
            priority=body.priority,
            idempotency_key=body.idempotency_key,
            not_before=body.not_before,
            window=body.window,
            time_zone=body.time_zone,
            max_attempts=body.max_attempts,
            metadata=body.metadata,
        )
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except (IdempotencyConflict, BrokenAgent) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except (InvalidOutboundJob, RefusedNumber) as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if not queued.created:
        response.status_code = status.HTTP_200_OK
    return queued.job


@router.post(
    "/v1/calls/{call_id}/hangup",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CallSummary,
    responses={
        404: {"description": "no such phone call"},
        409: {"description": "the call is over, or was never placed"},
        502: {"description": "Twilio refused"},
    },
)
async def hang_up(call_id: Ref, request: Request, principal: Auth, platform: PlatformDep) -> CallSummary:
    """Hang up a phone call in progress (or still ringing). Its status follows from Twilio's callbacks."""
    try:
        call = await platform.phone.phone_call(principal.org_id, call_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    await _hang_up(request, call)
    return call


async def _hang_up(request: Request, call: CallSummary) -> None:
    if CallStatus(call.status).terminal:
        raise HTTPException(status.HTTP_409_CONFLICT, f"call {call.id} is over ({call.status})")
    if call.provider_call_id is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"call {call.id} was not placed yet (cancel its outbound job instead)"
        )
    rest = _rest(request)
    live = live_session(request, call.session_id)
    if live is not None:
        live.end("hung_up_by_api")  # the session's own reason, before Twilio's "stop" says caller hung up
    try:
        await rest.hang_up(call.provider_call_id)
    except TwilioRestError as exc:
        if exc.code == NOT_FOUND:
            raise HTTPException(status.HTTP_409_CONFLICT, f"Twilio has no live call {call.id}") from exc
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, f"Twilio refused: {exc.message}") from exc
    log.info("hung up a call on request", call_id=call.id, call_sid=call.provider_call_id)


JobStatusQ = Annotated[
    str | None,
    Query(pattern=r"^(pending|dialing|completed|failed|canceled|exhausted)$", description="only jobs in it"),
]


@router.get("/v1/outbound-jobs")
async def list_jobs(
    request: Request,
    principal: Auth,
    status_: Annotated[JobStatusQ, Query(alias="status")] = None,
    limit: Limit = 50,
    cursor: CursorQ = None,
) -> Page[OutboundJobView]:
    """Outbound jobs, newest first."""
    try:
        return await _queue(request).page(principal.org_id, status_, limit, cursor)
    except InvalidCursor as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


@router.get("/v1/outbound-jobs/{job_id}", responses={404: {"description": "no such job"}})
async def get_job(job_id: Ref, request: Request, principal: Auth) -> OutboundJobView:
    try:
        return await _queue(request).get(principal.org_id, job_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post(
    "/v1/outbound-jobs/{job_id}/cancel",
    responses={404: {"description": "no such job"}, 409: {"description": "the job already ended"}},
)
async def cancel_job(
    job_id: Ref, request: Request, principal: Auth, platform: PlatformDep
) -> OutboundJobView:
    """Cancel a queued call. One being dialed or talking is hung up; the job is ``canceled`` once its
    call ends."""
    try:
        job = await _queue(request).cancel(principal.org_id, job_id)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    if job.cancel_requested and job.last_call_id is not None:
        try:
            call = await platform.phone.phone_call(principal.org_id, job.last_call_id)
            await _hang_up(request, call)
        except (NotFound, HTTPException) as exc:  # placed a moment ago, or over: the job settles itself
            log.info("cancel: the job's call could not be hung up now", job_id=job_id, error=str(exc))
    return job
