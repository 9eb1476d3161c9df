"""The local Twilio: the REST API Parley calls, and the call flow Twilio runs for each call.

REST (``/2010-04-01/Accounts/{AccountSid}/…``, HTTP basic auth ``AccountSid:AuthToken``, form-encoded
bodies, JSON answers) — https://www.twilio.com/docs/voice/api/call-resource and
https://www.twilio.com/docs/messaging/api/message-resource:
``POST Calls.json`` places a call, ``GET``/``POST Calls/{Sid}.json`` fetch and update it (hang up,
cancel, redirect to new ``Url``/``Twiml``); texts (``Messages.json``) are in ``messages.py``, and the
HTTP routes over all of it in ``rest_app.py``.

For each call it does what Twilio does (https://www.twilio.com/docs/voice/api/call-resource#statuscallback
and https://www.twilio.com/docs/voice/twiml): rings the scripted callee (``callee.py``), sends signed
status callbacks in order for the events asked (initiated → ringing → answered → completed, or busy /
no-answer / failed / canceled), requests the voice URL (signed, https://www.twilio.com/docs/usage/webhooks/
webhooks-security), runs its TwiML — ``<Connect><Stream>`` by dialing the stream with a
``SimulatedCaller`` and holding the call until the socket closes — and reports answering machine
detection (https://www.twilio.com/docs/voice/answering-machine-detection). ``place_inbound`` is a person
dialing a Parley number.

The record of every call and message is on ``TwilioSim.calls`` / ``.messages`` and at ``GET /sim/calls``,
``GET /sim/messages``. Conferences (``<Dial><Conference>``, the Conference and Participant resources, the
mixer with coaching) are in ``conference.py``, on ``TwilioSim.conferences`` and ``GET /sim/conferences``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import math
import secrets
from collections.abc import AsyncIterator, Collection, Coroutine, Generator
from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

import httpx
import numpy as np
import structlog
import uvicorn
from fastapi import Request
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped, unused-ignore]
from websockets.exceptions import WebSocketException

from parley.engine.events import now
from parley.twilio_sim.callee import (
    BEEP_S,
    END_SILENCE_S,
    MACHINE_ANSWERS,
    SAMPLE_RATE,
    CalleePlan,
    Callees,
    CalleeScript,
    beep,
    normalize_number,
)
from parley.twilio_sim.caller import CallEnded, SimulatedCaller
from parley.twilio_sim.conference import SimConferences
from parley.twilio_sim.messages import SimMessages
from parley.twilio_sim.network import NetworkProfile
from parley.twilio_sim.resources import (
    API_VERSION,
    CALL_EVENTS,
    TERMINAL,
    RestError,
    SimCall,
    SimMessage,
    Source,
    StreamRecord,
    Transfer,
    Webhook,
    WebhookKind,
    dialed_numbers,
    new_sid,
    phone_number,
    rfc2822,
    utcnow,
)
from parley.twilio_sim.rest_app import build_app
from parley.twilio_sim.twiml import (
    Connect,
    Dial,
    Hangup,
    Pause,
    Play,
    Redirect,
    Reject,
    Say,
    StartStream,
    TwimlError,
    Unsupported,
    Verb,
    parse_twiml,
)

if TYPE_CHECKING:
    from parley.twilio_sim.rest_app import Form

log = structlog.get_logger("parley.twilio_sim")

SIGNATURE_HEADER = "X-Twilio-Signature"
TURN_POLL_S = 0.05


class _Interrupted:
    """What a verb returns when the REST API or the callee cut it short."""


INTERRUPTED = _Interrupted()
Outcome = Source | str | None
"""A verb's result: the next TwiML to fetch, a final call status, or None to go on."""


def _method(value: str | None) -> str:
    return "GET" if (value or "").upper() == "GET" else "POST"


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


class TwilioSim:
    """A Twilio account on this machine: REST API, call flows, and the record of both.

    Build it, serve ``sim.app`` (``serving`` does both), point Parley at ``sim.base_url`` with
    ``account_sid``/``auth_token``. Script callees with ``sim.callees.set(number, CalleeScript(...))``.
    """

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        callees: Callees | None = None,
        network: NetworkProfile | None = None,
        transfer_hold_s: float = 0.5,
        webhook_timeout_s: float = 15.0,
    ) -> None:
        self.account_sid = account_sid or new_sid("AC")
        self.auth_token = auth_token or secrets.token_hex(16)
        self.callees = callees or Callees()
        self.network = network
        """Impairments of every simulated caller's outgoing audio."""
        self.transfer_hold_s = transfer_hold_s
        """How long a ``<Dial>``ed party stays on the line when its script does not say."""
        self.calls: dict[str, SimCall] = {}
        self.sms = SimMessages(self)
        """Texts (``messages.py``); ``messages`` is every one sent, by SID."""
        self.messages: dict[str, SimMessage] = self.sms.messages
        self.base_url: str | None = None
        self._validator = RequestValidator(self.auth_token)
        # Twilio fetches webhooks itself (15 s timeout, redirects followed), never through a proxy.
        self._http = httpx.AsyncClient(timeout=webhook_timeout_s, trust_env=False, follow_redirects=True)
        self._runs: set[asyncio.Task[None]] = set()
        self._closed = False
        self.conferences = SimConferences(self)
        self.app = build_app(self)

    # -- for tests and the CLI -----------------------------------------------------------------------

    def script(self, number: str, **fields: Any) -> CalleeScript:
        """Script a callee in one line: ``sim.script("+14155550100", outcomes=["busy", "answer"])``."""
        script = CalleeScript(**fields)
        self.callees.set(number, script)
        return script

    def call(self, sid: str) -> SimCall:
        return self.calls[sid]

    def calls_to(self, number: str) -> list[SimCall]:
        key = normalize_number(number)
        return [call for call in self.calls.values() if call.to == key]

    def place_inbound(
        self,
        from_: str,
        to: str,
        voice_url: str,
        *,
        method: str = "POST",
        status_callback: str | None = None,
        status_callback_method: str = "POST",
        status_callback_events: Collection[str] = ("completed",),
        script: CalleeScript | None = None,
    ) -> SimCall:
        """Someone dials ``to`` from ``from_``: Twilio requests the number's voice URL (CallStatus
        ringing), and the TwiML decides whether and how the call is answered. What the caller says comes
        from ``script`` or the scenario entry of ``from_``. Call from inside the event loop."""
        caller_number = phone_number(from_)
        called_number = phone_number(to)
        if caller_number is None or called_number is None:
            raise ValueError(f"not phone numbers: from {from_!r} to {to!r}")
        if not _http_url(voice_url):
            raise ValueError(f"voice URL must be http(s): {voice_url!r}")
        plan = self.callees.plan(caller_number, "answer", script or self.callees.script_for(caller_number))
        call = SimCall(
            account_sid=self.account_sid,
            to=called_number,
            from_=caller_number,
            direction="inbound",
            source=Source("voice", url=voice_url, method=_method(method)),
            status="ringing",
            status_callback=status_callback,
            status_callback_method=_method(status_callback_method),
            events=frozenset(status_callback_events) & CALL_EVENTS,
            plan=plan,
        )
        self.calls[call.sid] = call
        self._start(call, self._inbound(call))
        return call

    async def aclose(self) -> None:
        """End every call (no more callbacks) and release the HTTP client."""
        self._closed = True
        runs = list(self._runs)
        for task in runs:
            task.cancel()
        if runs:
            await asyncio.wait(runs)
        await self._http.aclose()

    # -- REST ----------------------------------------------------------------------------------------

    def authenticate(self, request: Request, account: str) -> None:
        """HTTP basic auth as AccountSid:AuthToken, else 401 with code 20003."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, password = "", ""
        valid = (
            scheme.lower() == "basic"
            and hmac.compare_digest(user.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
        )
        if not valid:
            raise RestError(401, 20003, "Authenticate")
        if account != self.account_sid:
            raise RestError(404, 20404, f"The requested resource {request.url.path} was not found")

    def find_call(self, sid: str, path: str) -> SimCall:
        call = self.calls.get(sid)
        if call is None:
            raise RestError(404, 20404, f"The requested resource {path} was not found")
        return call

    def create_call(self, form: Form) -> SimCall:
        """``POST Calls.json`` (https://www.twilio.com/docs/voice/api/call-resource#create-a-call-resource)."""
        to, from_ = dialed_numbers(form)
        url, twiml = form.one("Url"), form.one("Twiml")
        if not url and not twiml:
            raise RestError(400, 21205, "Url parameter is required (or Twiml)")
        if url and not _http_url(url):
            raise RestError(400, 21205, f"Url is not a valid URL: {url}")
        events = {event for value in form.many("StatusCallbackEvent") for event in value.split()}
        machine_detection = form.one("MachineDetection")
        call = SimCall(
            account_sid=self.account_sid,
            to=to,
            from_=from_,
            direction="outbound-api",
            # When both are given Twilio uses Url and ignores Twiml (Call resource, "Twiml").
            source=Source("voice", url=url, method=_method(form.one("Method")), twiml=None if url else twiml),
            status="queued",
            status_callback=form.one("StatusCallback") or None,
            status_callback_method=_method(form.one("StatusCallbackMethod")),
            events=frozenset(events & CALL_EVENTS) if events else frozenset({"completed"}),
            machine_detection=machine_detection
            if machine_detection in ("Enable", "DetectMessageEnd")
            else None,
            machine_detection_timeout_s=form.integer("MachineDetectionTimeout", 30, 3, 120),
            async_amd=(form.one("AsyncAmd") or "").lower() == "true",
            amd_callback=form.one("AsyncAmdStatusCallback") or None,
            amd_callback_method=_method(form.one("AsyncAmdStatusCallbackMethod")),
            timeout_s=form.integer("Timeout", 60, 1, 600),
            time_limit_s=form.integer("TimeLimit", 14_400, 1, 86_400),
        )
        call.plan = self.callees.next_call(to)
        self.calls[call.sid] = call
        self._start(call, self._outbound(call, call.plan))
        return call

    def update_call(self, call: SimCall, form: Form) -> None:
        """``POST Calls/{Sid}.json`` (https://www.twilio.com/docs/voice/api/call-resource#update-a-call-resource):
        ``Status=canceled`` ends a queued or ringing call, ``completed`` any call; ``Url``/``Twiml`` redirect
        an in-progress one."""
        if callback := form.one("StatusCallback"):
            call.status_callback = callback
            call.status_callback_method = _method(form.one("StatusCallbackMethod"))
        status = form.one("Status")
        if status is not None:
            if status not in ("completed", "canceled"):
                raise RestError(400, 20001, f"Status must be completed or canceled, got {status!r}")
            if call.status in TERMINAL:
                return
            if status == "completed" or call.status in ("queued", "ringing"):
                call.request_stop("api")
            return
        url, twiml = form.one("Url"), form.one("Twiml")
        if not url and not twiml:
            return
        if call.status != "in-progress" or call.stop_requested is not None:
            raise RestError(400, 21220, "Call is not in-progress. Cannot redirect.")
        if url and not _http_url(url):
            raise RestError(400, 21205, f"Url is not a valid URL: {url}")
        method = _method(form.one("Method"))
        call.request_redirect(Source("redirect", url=url, method=method, twiml=None if url else twiml))

    # -- webhooks ------------------------------------------------------------------------------------

    def sign(self, url: str, params: dict[str, str]) -> str:
        """``X-Twilio-Signature``: the URL and the sorted POST parameters, HMAC-SHA1 with the auth token."""
        signature: str = self._validator.compute_signature(url, params)
        return signature

    async def _send(
        self, records: list[Webhook], kind: WebhookKind, url: str, method: str, params: dict[str, str]
    ) -> Webhook:
        """One webhook request: form-encoded POST, or GET with the parameters in the query string (then
        the signature covers the full URL and no body)."""
        if method == "GET":
            target = url + ("&" if urlsplit(url).query else "?") + urlencode(params)
            webhook = Webhook(kind, target, "GET", params, self.sign(target, {}), now())
        else:
            webhook = Webhook(kind, url, "POST", params, self.sign(url, params), now())
        records.append(webhook)
        headers = {SIGNATURE_HEADER: webhook.signature, "User-Agent": "TwilioProxy/1.1"}
        try:
            if method == "GET":
                response = await self._http.get(webhook.url, headers=headers)
            else:
                response = await self._http.post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            webhook.error = f"{type(exc).__name__}: {exc}"
            log.warning("twilio_sim.webhook_unreachable", kind=kind, url=url, error=webhook.error)
            return webhook
        webhook.status_code = response.status_code
        if kind in ("voice", "redirect", "action"):
            webhook.body = response.text
        if response.status_code >= 400:
            log.warning("twilio_sim.webhook_refused", kind=kind, url=url, status=response.status_code)
        return webhook

    @staticmethod
    def _call_params(call: SimCall, status: str) -> dict[str, str]:
        """The parameters of every voice request (https://www.twilio.com/docs/voice/twiml#request-parameters)."""
        return {
            "AccountSid": call.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": call.sid,
            "CallStatus": status,
            "Called": call.to,
            "Caller": call.from_,
            "Direction": call.direction,
            "From": call.from_,
            "To": call.to,
        }

    def _progress(self, call: SimCall, event: str) -> None:
        """Queue the status callback of ``event`` if it was asked for; callbacks go out one at a time,
        in order (https://www.twilio.com/docs/voice/api/call-resource#statuscallbackevent)."""
        if call.status_callback is None or event not in call.events:
            return
        status = {"initiated": "initiated", "ringing": "ringing", "answered": "in-progress"}.get(
            event, call.status
        )
        params = self._call_params(call, status)
        params["CallbackSource"] = "call-progress-events"
        params["Timestamp"] = rfc2822(utcnow()) or ""
        params["SequenceNumber"] = str(call.callback_sequence)
        call.callback_sequence += 1
        if event == "completed":
            seconds = call.duration_s or 0
            params["CallDuration"] = str(seconds)
            params["Duration"] = str(math.ceil(seconds / 60))  # billed minutes
            if call.answered_by is not None:
                params["AnsweredBy"] = call.answered_by
        call.outbox.put_nowait(("status", call.status_callback, call.status_callback_method, params))

    async def _deliver(self, call: SimCall) -> None:
        while True:
            kind, url, method, params = await call.outbox.get()
            try:
                await self._send(call.webhooks, kind, url, method, params)
            finally:
                call.outbox.task_done()

    # -- call flow -----------------------------------------------------------------------------------

    def _track(self, task: asyncio.Task[None]) -> None:
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    def _start(self, call: SimCall, flow: Coroutine[Any, Any, str]) -> None:
        if self._closed:
            flow.close()
            raise RuntimeError("the simulator is closed")
        self._track(asyncio.create_task(self._run(call, flow), name=f"twilio-sim-call-{call.sid}"))

    async def _run(self, call: SimCall, flow: Coroutine[Any, Any, str]) -> None:
        sender = asyncio.create_task(self._deliver(call), name=f"twilio-sim-callbacks-{call.sid}")
        try:
            try:
                status = await flow
            except Exception:
                log.exception("twilio_sim.flow_failed", call_sid=call.sid)
                call.errors.append("the simulator failed running this call (see its log)")
                status = "completed" if call.answered else "failed"
            await self._finish(call, status)
        except asyncio.CancelledError:
            await self._abandon(call)
            raise
        finally:
            sender.cancel()
            await asyncio.wait({sender})
            call.ended.set()

    async def _finish(self, call: SimCall, status: str) -> None:
        await call.stop_helpers()
        await self._end_stream(call)
        call.end(status)
        self._progress(call, "completed")
        await call.outbox.join()
        log.info("twilio_sim.call_ended", call_sid=call.sid, status=call.status, by=call.hung_up_by)

    async def _abandon(self, call: SimCall) -> None:
        """The simulator is shutting down: drop the call without callbacks."""
        await call.stop_helpers()
        caller = call.caller
        if caller is not None and not caller.closed:
            caller.abort()
            with contextlib.suppress(TimeoutError):
                await caller.wait_closed(1.0)
        call.end("completed" if call.answered else "canceled")

    def _stopped(self, call: SimCall) -> str:
        call.hung_up_by = call.stop_requested
        return "completed" if call.answered else "canceled"

    async def _sleep(self, call: SimCall, seconds: float) -> bool:
        """Wait, unless the call is interrupted first (then True)."""
        if call.wake.is_set():
            return True
        try:
            await asyncio.wait_for(call.wake.wait(), seconds)
        except TimeoutError:
            return False
        return True

    async def _outbound(self, call: SimCall, plan: CalleePlan) -> str:
        """Queued → initiated → ringing → answered or not (the callee's outcome for this call)."""
        self._progress(call, "initiated")
        if plan.outcome == "failed":
            call.hung_up_by = "network"
            return "failed"
        call.set_status("ringing")
        self._progress(call, "ringing")
        outcome, ring_s = plan.outcome, plan.script.ring_s
        if outcome == "answer" and ring_s >= call.timeout_s:
            outcome, ring_s = "no-answer", float(call.timeout_s)
        if await self._sleep(call, ring_s):
            return self._stopped(call)
        if outcome != "answer":
            call.hung_up_by = "callee"
            return outcome
        self._answer(call)
        source: Source | None = call.source
        amd = self._amd(call, plan)
        if amd is not None:
            result, delay = amd
            if call.async_amd:
                call.spawn(self._async_amd(call, result, delay), "amd")
            else:
                # Sync AMD: the voice URL is requested once detection is done, with AnsweredBy.
                if await self._sleep(call, delay):
                    if call.stop_requested is not None:
                        return self._stopped(call)
                    source = call.take_redirect()
                call.answered_by = result
                call.greeting_elapsed = result in MACHINE_ANSWERS and result != "machine_start"
                if source is not None and source.kind == "voice":
                    detected = {"AnsweredBy": result, "MachineDetectionDuration": str(round(delay * 1000))}
                    source = replace(source, extra=detected)
        return await self._execute(call, source)

    async def _inbound(self, call: SimCall) -> str:
        self._progress(call, "initiated")
        self._progress(call, "ringing")
        return await self._execute(call, call.source)

    def _answer(self, call: SimCall) -> None:
        call.answered_at = now()
        call.start_time = utcnow()
        call.set_status("in-progress")
        self._progress(call, "answered")
        plan = call.plan
        if plan is not None and plan.script.hang_up_after_s is not None:
            call.spawn(self._hang_up_later(call, plan.script.hang_up_after_s, "callee"), "callee-hangup")
        call.spawn(self._hang_up_later(call, call.time_limit_s, "time-limit"), "time-limit")

    @staticmethod
    async def _hang_up_later(call: SimCall, seconds: float, by: str) -> None:
        await asyncio.sleep(seconds)
        call.request_stop(by)

    @staticmethod
    def _amd(call: SimCall, plan: CalleePlan) -> tuple[str, float] | None:
        """What AMD reports and when (seconds after answer); None when it was not asked for.

        ``Enable`` reports a machine as soon as it is sure (``machine_start``); ``DetectMessageEnd`` waits
        for the end of the greeting (the beep, or silence). Past ``MachineDetectionTimeout`` it is
        ``unknown``."""
        if call.machine_detection is None:
            return None
        answered_by, script = plan.script.answered_by, plan.script
        if answered_by not in MACHINE_ANSWERS:
            result, delay = answered_by, script.amd_s
        elif call.machine_detection == "Enable":
            result, delay = "machine_start", script.amd_s
        else:
            tail = {"machine_end_beep": BEEP_S, "machine_end_silence": END_SILENCE_S}.get(answered_by, 0.0)
            result = "machine_end_other" if answered_by == "machine_start" else answered_by
            delay = plan.greeting_s + tail
        if delay > call.machine_detection_timeout_s:
            return "unknown", float(call.machine_detection_timeout_s)
        return result, delay

    async def _async_amd(self, call: SimCall, result: str, delay: float) -> None:
        """Async AMD: the call runs its TwiML meanwhile; the result goes to AsyncAmdStatusCallback."""
        await asyncio.sleep(delay)
        caller = call.caller
        if result in MACHINE_ANSWERS and caller is not None and caller.spoken:
            # Detection listens to the line: a machine's greeting went on it once the stream was up (after
            # the answer), so its end (the beep) is reported once that has been captured.
            await asyncio.sleep(max(0.0, caller.spoken[0].start + delay - now()))
        call.answered_by = result
        if call.amd_callback is None:
            return
        params = {
            "AccountSid": call.account_sid,
            "AnsweredBy": result,
            "CallSid": call.sid,
            "MachineDetectionDuration": str(round(delay * 1000)),
        }
        await self._send(call.webhooks, "amd", call.amd_callback, call.amd_callback_method, params)

    async def _instructions(self, call: SimCall, source: Source) -> list[Verb] | None:
        """The verbs to run next: the inline TwiML, or the answer of a signed request to the URL."""
        if source.url is None:
            text, base = source.twiml or "", None
        else:
            params = self._call_params(call, call.status) | source.extra
            webhook = await self._send(call.webhooks, source.kind, source.url, source.method, params)
            if webhook.status_code is None or not 200 <= webhook.status_code < 300:
                reason = webhook.error or f"HTTP {webhook.status_code}"
                call.errors.append(f"11200 HTTP retrieval failure: {source.url}: {reason}")
                return None
            text, base = webhook.body or "", source.url
        call.twiml.append(text)
        try:
            return parse_twiml(text, base)
        except TwimlError as exc:
            call.errors.append(str(exc))
            log.warning("twilio_sim.bad_twiml", call_sid=call.sid, error=str(exc))
            return None

    async def _execute(self, call: SimCall, source: Source | None) -> str:
        """Run TwiML until a verb ends the call or there is nothing left to do (Twilio hangs up)."""
        while source is not None:
            verbs = await self._instructions(call, source)
            if verbs is None:  # Twilio says "an application error has occurred" and hangs up
                call.hung_up_by = "error"
                return "completed" if call.answered else "failed"
            source = None
            for verb in verbs:
                if call.stop_requested is not None:
                    return self._stopped(call)
                if call.redirect is not None:
                    break
                if not call.answered and not isinstance(verb, Reject):
                    self._answer(call)  # any verb but <Reject> picks up an inbound call
                outcome = await self._interruptible(call, self._perform(call, verb))
                if isinstance(outcome, _Interrupted):
                    await self._end_stream(call)
                    if call.stop_requested is not None:
                        return self._stopped(call)
                    break
                if isinstance(outcome, Source):
                    source = outcome
                    break
                if isinstance(outcome, str):
                    call.hung_up_by = "app"
                    return outcome
            if call.stop_requested is not None:
                return self._stopped(call)
            if call.redirect is not None:
                source = call.take_redirect()
        if not call.answered:
            self._answer(call)
        call.hung_up_by = "app"
        return "completed"

    async def _interruptible(
        self, call: SimCall, work: Coroutine[Any, Any, Outcome]
    ) -> Outcome | _Interrupted:
        if call.wake.is_set():
            work.close()
            return INTERRUPTED
        task = asyncio.create_task(work, name=f"twilio-sim-verb-{call.sid}")
        wake = asyncio.create_task(call.wake.wait())
        try:
            await asyncio.wait({task, wake}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            wake.cancel()
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled():
            return INTERRUPTED
        return task.result()

    async def _perform(self, call: SimCall, verb: Verb) -> Outcome:
        """One verb (https://www.twilio.com/docs/voice/twiml). Speech is recorded, not synthesized."""
        if isinstance(verb, Say):
            call.said.append(verb.text)
        elif isinstance(verb, Play):
            call.played.append(verb.url)
        elif isinstance(verb, Pause):
            await asyncio.sleep(verb.length)
        elif isinstance(verb, Hangup):
            return "completed"
        elif isinstance(verb, Reject):
            # As the first verb it refuses the call unanswered (https://www.twilio.com/docs/voice/twiml/reject).
            if call.answered:
                return "completed"
            return "busy" if verb.reason == "busy" else "no-answer"
        elif isinstance(verb, Redirect):
            return Source("redirect", url=verb.url, method=verb.method)
        elif isinstance(verb, Dial):
            return await self._dial(call, verb)
        elif isinstance(verb, Connect):
            return await self._connect(call, verb)
        elif isinstance(verb, StartStream):
            call.skipped.append("Start")
            log.warning("twilio_sim.fork_not_simulated", call_sid=call.sid, url=verb.stream.url)
        elif isinstance(verb, Unsupported):
            call.skipped.append(verb.verb)
            log.warning("twilio_sim.verb_not_simulated", call_sid=call.sid, verb=verb.verb)
        return None

    async def _connect(self, call: SimCall, verb: Connect) -> Outcome:
        """``<Connect><Stream>``: dial the stream and hold the call until it closes; then the call moves on
        (to ``action`` if given, https://www.twilio.com/docs/voice/twiml/connect)."""
        stream = verb.stream
        url = stream.url
        parts = urlsplit(url)
        if parts.query or parts.fragment:
            # "The url does not support query string parameters" (https://www.twilio.com/docs/voice/
            # twiml/stream#attributes-url): values travel as <Parameter>s; the sim drops a query as Twilio.
            url = parts._replace(query="", fragment="").geturl()
            log.warning("twilio_sim.stream_query_dropped", call_sid=call.sid, url=stream.url)
        caller = SimulatedCaller(
            url,
            auth_token=self.auth_token,
            account_sid=call.account_sid,
            call_sid=call.sid,
            custom_parameters=stream.parameters,
            network=self.network,
        )
        record = StreamRecord(url, dict(stream.parameters), caller.stream_sid, caller)
        call.streams.append(record)
        try:
            await caller.connect()
        except (OSError, TimeoutError, WebSocketException) as exc:
            # 31920: Stream - WebSocket - Handshake Error; Twilio goes on with the next verb.
            record.error = f"31920 stream handshake failed: {type(exc).__name__}: {exc}"
            call.errors.append(record.error)
            log.warning("twilio_sim.stream_failed", call_sid=call.sid, url=url, error=record.error)
            return None
        record.connected = True
        call.connected.set()
        call.spawn(self._callee_speaks(call, caller), "callee-voice")
        await caller.wait_closed()
        if verb.action is not None:
            return Source("action", url=verb.action, method=verb.method)
        return None

    async def _end_stream(self, call: SimCall) -> None:
        """Twilio ending the stream (hang-up, redirect): ``stop``, then the socket closes."""
        caller = call.caller
        if caller is not None and not caller.closed:
            await caller.hang_up()

    async def _callee_speaks(self, call: SimCall, caller: SimulatedCaller) -> None:
        """The scripted party's voice on the line: a machine plays its greeting (and beep) at once, a
        human says each clip when it is their turn."""
        plan = call.plan
        if plan is None or not plan.clips:
            return
        try:
            if plan.machine:
                if call.greeting_elapsed:
                    return  # sync AMD waited it out before the stream existed
                recording = list(plan.clips)
                if plan.script.answered_by == "machine_end_beep":
                    recording.append(beep())
                # One recording, no gaps between its parts: detection times its end from its start.
                await caller.say(np.concatenate(recording), SAMPLE_RATE)
                return
            since = now()
            for clip in plan.clips:
                await self._wait_for_turn(caller, since, plan.script)
                await caller.say(clip, SAMPLE_RATE)
                since = now()
        except CallEnded:
            return

    @staticmethod
    async def _wait_for_turn(caller: SimulatedCaller, since: float, script: CalleeScript) -> None:
        """Until the agent has spoken since ``since`` and then been quiet ``reply_gap_s`` (or
        ``wait_for_agent_s`` passed with nothing heard)."""
        deadline = now() + script.wait_for_agent_s
        while now() < deadline:
            span = caller.heard_voice(since)
            if span is not None and now() - span[1] >= script.reply_gap_s:
                return
            await asyncio.sleep(TURN_POLL_S)

    async def _dial(self, call: SimCall, verb: Dial) -> Outcome:
        """``<Dial>``: the call is bridged to the target (a transfer); the dialed party is scripted like any
        callee. Afterwards the call goes on to ``action`` with DialCallStatus, or the next verb
        (https://www.twilio.com/docs/voice/twiml/dial)."""
        target = verb.targets[0]
        if target.kind == "conference":
            return await self.conferences.join(call, verb, target)
        if target.kind == "number":
            plan = self.callees.next_call(target.address)
        else:
            plan = self.callees.plan(target.address, "answer", self.callees.default)
        transfer = Transfer(target.address, target.kind, now())
        call.transfers.append(transfer)
        log.info("twilio_sim.transfer", call_sid=call.sid, target=target.address, kind=target.kind)
        try:
            await asyncio.sleep(min(plan.script.ring_s, float(verb.timeout_s)))
            if plan.outcome != "answer":
                transfer.status = plan.outcome
            else:
                transfer.status = "in-progress"
                transfer.answered_at = now()
                await asyncio.sleep(plan.script.hang_up_after_s or self.transfer_hold_s)
                transfer.status = "completed"
        finally:
            transfer.ended_at = now()
            if transfer.status == "in-progress":
                transfer.status = "completed"
        if verb.action is None:
            return None
        extra = {
            "DialCallSid": transfer.sid,
            "DialCallStatus": transfer.status,
            "DialCallDuration": str(transfer.duration_s),
        }
        return Source("action", url=verb.action, method=verb.method, extra=extra)


class _InProcessServer(uvicorn.Server):
    """Leaves the host's signal handlers alone (a test runner or another server owns them)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serving(
    sim: TwilioSim | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[TwilioSim]:
    """Serve ``sim`` (a new one by default) in this event loop; ``sim.base_url`` is set while it runs."""
    sim = sim or TwilioSim()
    config = uvicorn.Config(sim.app, host=host, port=port, log_level="warning", lifespan="off")
    server = _InProcessServer(config)
    task = asyncio.create_task(server.serve(), name="twilio-sim-server")
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("the local Twilio stopped before it started")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        sim.base_url = f"http://{shown}:{bound}"
        yield sim
    finally:
        await sim.aclose()
        server.should_exit = True
        await asyncio.wait({task}, timeout=10)
