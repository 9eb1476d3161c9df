"""Twilio's webhooks: the voice URL (what to do with a call), status callbacks, and the answering-machine
verdict. Every one is signed by Twilio and refused unless the signature checks out (403; 503 while Twilio
is not configured, as nothing can be checked then).

- ``POST /twilio/voice``: an inbound call to one of the organization's numbers (``To``) is put on the
  books and connected to a media stream; with ``?call_id=`` (the URL the outbound queue gives Twilio) it
  is an outbound call that was answered. Either way the answer is ``<Connect><Stream>`` with the call id
  as a ``<Parameter>``. https://www.twilio.com/docs/voice/twiml#request-parameters
- ``POST /twilio/status``: ``CallStatus`` progress events, applied at their ``Timestamp`` in whatever
  order they arrive; an attempt of an outbound job also settles the job.
  https://www.twilio.com/docs/voice/api/call-resource#statuscallback
- ``POST /twilio/amd``: ``AnsweredBy`` from asynchronous answering-machine detection; a machine gets
  what the agent's ``telephony.machine`` says: a hang-up, or its voicemail message after the beep.
  https://www.twilio.com/docs/voice/answering-machine-detection#asyncamdstatuscallback-parameters

A callback that contradicts a call's history, or names no known call, is logged and answered 2xx:
Twilio cannot fix it by sending it again.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Annotated

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status

from parley.config import Settings
from parley.engine.agent import TelephonySettings
from parley.platform.phone import (
    SERVER_UNAVAILABLE,
    CallMismatch,
    MachineVerdict,
    UnknownNumber,
    UnknownStatus,
)
from parley.server.auth import PlatformDep, get_platform
from parley.store.lifecycle import CallStatus, InvalidStatusTransition
from parley.telephony.rest import TwilioRest, TwilioRestError
from parley.telephony.signatures import TwilioWebhook, public_base_url, twilio_webhook
from parley.telephony.twiml import hangup_twiml, reject_twiml, stream_twiml, stream_url

if TYPE_CHECKING:
    from parley.server.live import LiveSession

log = structlog.get_logger("parley.server.twilio")

router = APIRouter(prefix="/twilio", tags=["twilio"])

_CALL_SID = re.compile(r"^CA[0-9a-fA-F]{32}$")
_ANSWERED_BY = re.compile(r"^[a-z_]{1,32}$")
TWIML = "application/xml"


def _settings(request: Request) -> Settings:
    return get_platform(request).settings


Webhook = Annotated[TwilioWebhook, Depends(twilio_webhook(_settings))]
CallIdQ = Annotated[
    str | None,
    Query(max_length=40, pattern=r"^call_[0-9a-f]{1,34}$", description="the call Parley placed this for"),
]


def twilio_rest(request: Request) -> TwilioRest | None:
    """The REST client the server lifespan made (None while Twilio is not configured)."""
    rest = getattr(request.app.state, "twilio_rest", None)
    return rest if isinstance(rest, TwilioRest) else None


def live_session(request: Request, session_id: str) -> LiveSession | None:
    """The live session of a call, if this process runs it."""
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        return None
    live: LiveSession | None = runtime.registry.get(session_id)
    return live if live is not None and not live.closed else None


def _call_sid(hook: TwilioWebhook) -> str:
    sid = hook.get("CallSid") or ""
    if not _CALL_SID.match(sid):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "CallSid missing or malformed")
    return sid


def _timestamp(value: str | None) -> datetime | None:
    """Twilio stamps callbacks in RFC 2822 (``Tue, 25 Nov 2026 18:02:40 +0000``)."""
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _count(value: str | None) -> int | None:
    return int(value) if value and value.isascii() and value.isdigit() and len(value) <= 9 else None


def _twiml(xml: str) -> Response:
    return Response(content=xml, media_type=TWIML)


@router.post("/voice", response_class=Response, responses={200: {"content": {TWIML: {}}}})
async def voice(request: Request, hook: Webhook, platform: PlatformDep, call_id: CallIdQ = None) -> Response:
    """TwiML for a call: connect it to Parley's media stream, or refuse it."""
    sid = _call_sid(hook)
    runtime = getattr(request.app.state, "runtime", None)
    try:
        if call_id is not None:
            call = await platform.phone.answer_outbound(call_id, sid)
        else:
            call = await platform.phone.inbound(hook.get("To") or "", hook.get("From"), sid)
    except UnknownNumber as exc:
        log.warning("refused an inbound call", call_sid=sid, to=hook.get("To"), reason=str(exc))
        return _twiml(reject_twiml())
    except CallMismatch as exc:
        log.warning(
            "voice webhook for a call that cannot be connected", call_sid=sid, call_id=call_id, error=str(exc)
        )
        return _twiml(hangup_twiml())
    if runtime is not None and (runtime.draining or not platform.settings.realtime_enabled):
        try:
            await platform.calls.set_status(call.id, CallStatus.FAILED, reason=SERVER_UNAVAILABLE)
        except InvalidStatusTransition:
            log.info("call ended while being refused", call_id=call.id)
        log.warning("refused a phone call: this server takes no new sessions", call_id=call.id, call_sid=sid)
        return _twiml(reject_twiml("busy") if call_id is None else hangup_twiml())
    url = stream_url(public_base_url(request, platform.settings))
    log.info("connecting a phone call", call_id=call.id, call_sid=sid, direction=call.direction)
    if runtime is not None:
        runtime.warm_for_call(call.session_id)
    return _twiml(stream_twiml(url, {"call_id": call.id}))


@router.post("/status", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def call_status(
    request: Request, hook: Webhook, platform: PlatformDep, call_id: CallIdQ = None
) -> Response:
    """A call's progress, from Twilio's ``StatusCallbackEvent``s."""
    sid = _call_sid(hook)
    raw = hook.get("CallStatus") or ""
    try:
        update = await platform.phone.status(
            sid,
            raw,
            _timestamp(hook.get("Timestamp")),
            call_id=call_id,
            duration_s=_count(hook.get("CallDuration")),
            sip_code=_count(hook.get("SipResponseCode")),
        )
    except UnknownStatus:
        log.warning("status callback with an unknown CallStatus", call_sid=sid, status=raw[:40])
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    call = update.call
    queue = getattr(request.app.state, "outbound", None)
    if call is not None and call.job_id is not None and update.status.terminal and queue is not None:
        try:
            await queue.outcome(call.id, update.status)
        except Exception:  # the queue's recovery settles the job later; Twilio need not retry
            log.exception(
                "telling the outbound queue an attempt's outcome failed", call_id=call.id, job_id=call.job_id
            )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/amd", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def machine_detection(
    request: Request, hook: Webhook, platform: PlatformDep, call_id: CallIdQ = None
) -> Response:
    """Answering-machine detection's verdict on an outbound call."""
    sid = _call_sid(hook)
    answered_by = hook.get("AnsweredBy") or ""
    if not _ANSWERED_BY.match(answered_by):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "AnsweredBy missing or malformed")
    verdict = await platform.phone.machine(sid, answered_by, call_id=call_id)
    if verdict is not None and verdict.machine and not verdict.repeated:
        await _on_machine(request, verdict, sid)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _on_machine(request: Request, verdict: MachineVerdict, sid: str) -> None:
    """Leave the agent's voicemail message (spoken at once: AMD reported the end of the greeting), or
    hang up."""
    policy = verdict.agent.telephony if verdict.agent is not None else TelephonySettings()
    call = verdict.call
    live = live_session(request, call.session_id)
    if policy.machine == "voicemail" and policy.voicemail_message:
        if live is not None:
            log.info("leaving a voicemail", call_id=call.id, answered_by=verdict.call.answered_by)
            live.engine.say(policy.voicemail_message, end_after="voicemail_left")
            return
        log.warning("no live session here to leave the voicemail from; hanging up", call_id=call.id)
    if live is not None:
        live.end("answering_machine")
    rest = twilio_rest(request)
    if rest is None:
        log.error(
            "cannot hang up on an answering machine: Twilio's REST API is not configured", call_id=call.id
        )
        return
    try:
        await rest.hang_up(sid)
    except TwilioRestError as exc:
        log.warning(
            "hanging up on an answering machine failed", call_id=call.id, code=exc.code, error=exc.message
        )
    else:
        log.info("hung up on an answering machine", call_id=call.id, answered_by=call.answered_by)
