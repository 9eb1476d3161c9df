"""What the local Twilio keeps about calls and messages, and the JSON shapes its REST API answers with.

Shapes follow Twilio's API reference and the fields the official library reads:
- Call resource: https://www.twilio.com/docs/voice/api/call-resource (``twilio.rest.api.v2010.account.call.
  CallInstance``);
- Message resource: https://www.twilio.com/docs/messaging/api/message-resource (``twilio.rest.api.v2010.
  account.message.MessageInstance``);
- errors: ``{"code", "message", "more_info", "status"}`` (https://www.twilio.com/docs/usage/twilios-response#
  response-formats-exceptions), read by ``twilio.base.version.Version.exception`` into a
  ``TwilioRestException`` carrying ``code``.
Dates are RFC 2822 in UTC (``Tue, 31 Aug 2010 20:36:28 +0000``), as Twilio writes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any, Literal

import phonenumbers
import structlog

from parley.engine.events import now

if TYPE_CHECKING:
    from parley.twilio_sim.callee import CalleePlan
    from parley.twilio_sim.caller import SimulatedCaller
    from parley.twilio_sim.rest_app import Form

log = structlog.get_logger("parley.twilio_sim")

API_VERSION = "2010-04-01"
TERMINAL = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
"""Call statuses a call never leaves."""
CALL_EVENTS = frozenset({"initiated", "ringing", "answered", "completed"})
"""``StatusCallbackEvent`` values (Call resource, "StatusCallbackEvent")."""

Direction = Literal["outbound-api", "inbound"]
WebhookKind = Literal["voice", "redirect", "action", "status", "amd", "message-status", "conference"]


class RestError(Exception):
    """An error answer of the REST API, in Twilio's JSON shape."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "more_info": f"https://www.twilio.com/docs/errors/{self.code}",
            "status": self.status,
        }


def list_page(key: str, items: list[dict[str, Any]], uri: str) -> dict[str, Any]:
    """A list answer (``GET Calls.json``, ``Conferences.json`` …) as Twilio pages it: all of it on page 0,
    with no next page."""
    return {
        key: items,
        "end": max(len(items) - 1, 0),
        "first_page_uri": f"{uri}?PageSize=50&Page=0",
        "next_page_uri": None,
        "page": 0,
        "page_size": 50,
        "previous_page_uri": None,
        "start": 0,
        "uri": uri,
    }


def new_sid(prefix: str) -> str:
    """Two letters and 32 hex digits, as every Twilio SID (CA calls, SM messages, AC accounts)."""
    return prefix + secrets.token_hex(16)


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc2822(moment: datetime | None) -> str | None:
    return None if moment is None else format_datetime(moment.astimezone(UTC))


def phone_number(value: str) -> str | None:
    """E.164 for something Twilio would dial, else None (error 21211 for a To, 21212 for a From).

    Like Twilio, unformatted US numbers are accepted; ``sip:`` and ``client:`` addresses pass as they are.
    """
    if value.startswith(("sip:", "client:")):
        return value if len(value) > value.index(":") + 1 else None
    try:
        parsed = phonenumbers.parse(value, "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def dialed_numbers(form: Form) -> tuple[str, str]:
    """A dial request's ``To`` and ``From`` in E.164, or Twilio's error for a missing or invalid one
    (21201, 21211; 21213, 21212), as ``POST Calls.json`` and ``Participants.json`` answer it."""
    to_raw, from_raw = form.one("To"), form.one("From")
    if not to_raw:
        raise RestError(400, 21201, "No 'To' number is specified")
    to = phone_number(to_raw)
    if to is None:
        raise RestError(400, 21211, f"Invalid 'To' Phone Number: {to_raw}")
    if not from_raw:
        raise RestError(400, 21213, "No 'From' number is specified")
    from_ = phone_number(from_raw)
    if from_ is None:
        raise RestError(400, 21212, f"Invalid 'From' Phone Number: {from_raw}")
    return to, from_


def formatted(number: str) -> str:
    """``to_formatted``/``from_formatted``: national format for North American numbers, else E.164."""
    if not number.startswith("+1"):
        return number
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


@dataclass(slots=True)
class Webhook:
    """One request the local Twilio made to the application, and what came back."""

    kind: WebhookKind
    url: str
    method: str
    params: dict[str, str]
    signature: str
    at: float
    """When it was sent (monotonic)."""
    status_code: int | None = None
    """The application's HTTP status; None when it could not be reached."""
    error: str | None = None
    body: str | None = None
    """The response body of a TwiML request."""

    def record(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "method": self.method,
            "params": self.params,
            "status_code": self.status_code,
            "error": self.error,
        }


@dataclass(slots=True)
class Source:
    """Where the next TwiML comes from: a URL to request, or a document given inline (``Twiml``)."""

    kind: WebhookKind
    url: str | None = None
    method: str = "POST"
    twiml: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    """Parameters added to the request (``AnsweredBy``, ``DialCallStatus`` …)."""


@dataclass(slots=True)
class Transfer:
    """A ``<Dial>``: the call was bridged to someone else."""

    target: str
    kind: str
    at: float
    sid: str = field(default_factory=lambda: new_sid("CA"))
    status: str = "ringing"
    """The dialed leg's outcome as ``DialCallStatus`` reports it."""
    answered_at: float | None = None
    ended_at: float | None = None

    @property
    def duration_s(self) -> int:
        if self.answered_at is None or self.ended_at is None:
            return 0
        return round(self.ended_at - self.answered_at)

    def record(self) -> dict[str, Any]:
        return {"target": self.target, "kind": self.kind, "sid": self.sid, "status": self.status}


@dataclass(slots=True)
class StreamRecord:
    """A ``<Connect><Stream>`` the call followed."""

    url: str
    parameters: dict[str, str]
    stream_sid: str
    caller: SimulatedCaller
    connected: bool = False
    error: str | None = None

    def record(self) -> dict[str, Any]:
        caller = self.caller
        return {
            "url": self.url,
            "parameters": self.parameters,
            "stream_sid": self.stream_sid,
            "connected": self.connected,
            "error": self.error,
            "ended_by": caller.ended_by,
            "media_received": caller.media_received,
            "heard_s": round(sum(len(clip.pcm) for clip in caller.heard) / 8000, 3),
            "spoken_s": round(sum(len(clip.pcm) for clip in caller.spoken) / 8000, 3),
            "marks_echoed": caller.marks_echoed,
            "marks_cleared": caller.marks_cleared,
            "clears": caller.clears_received,
        }


class SimCall:
    """One call through the local Twilio: its resource fields and the record of everything that happened.

    Tests read ``statuses`` (CallStatus of every status callback sent, in order), ``webhooks``, ``twiml``
    (documents received), ``said``, ``transfers``, ``streams``/``caller`` and ``errors``, and wait with
    ``wait_connected`` / ``wait_ended``.
    """

    def __init__(
        self,
        *,
        account_sid: str,
        to: str,
        from_: str,
        direction: Direction,
        source: Source,
        status: str,
        status_callback: str | None = None,
        status_callback_method: str = "POST",
        events: frozenset[str] = frozenset({"completed"}),
        machine_detection: str | None = None,
        machine_detection_timeout_s: float = 30.0,
        async_amd: bool = False,
        amd_callback: str | None = None,
        amd_callback_method: str = "POST",
        timeout_s: int = 60,
        time_limit_s: int = 14_400,
        plan: CalleePlan | None = None,
    ) -> None:
        self.sid = new_sid("CA")
        self.account_sid = account_sid
        self.to = to
        self.from_ = from_
        self.direction: Direction = direction
        self.source = source
        self.status = status
        self.status_callback = status_callback
        self.status_callback_method = status_callback_method
        self.events = events
        self.machine_detection = machine_detection
        self.machine_detection_timeout_s = machine_detection_timeout_s
        self.async_amd = async_amd
        self.amd_callback = amd_callback
        self.amd_callback_method = amd_callback_method
        self.timeout_s = timeout_s
        self.time_limit_s = time_limit_s
        self.plan = plan
        self.date_created = utcnow()
        self.date_updated = self.date_created
        self.start_time: datetime | None = None
        self.end_time: datetime | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.answered_by: str | None = None
        self.greeting_elapsed = False
        """Sync AMD waited out a machine's greeting before the app got the call."""
        self.hung_up_by: str | None = None
        """callee, app (TwiML or the stream closing with nothing left to do), api, time-limit."""
        self.webhooks: list[Webhook] = []
        self.twiml: list[str] = []
        self.said: list[str] = []
        self.played: list[str] = []
        self.transfers: list[Transfer] = []
        self.streams: list[StreamRecord] = []
        self.skipped: list[str] = []
        """Verbs the simulator cannot act on, in the order met."""
        self.errors: list[str] = []
        self.callback_sequence = 0
        self.stop_requested: str | None = None
        self.redirect: Source | None = None
        self.wake = asyncio.Event()
        """Set when the REST API or the callee interrupts what the call is doing."""
        self.ended = asyncio.Event()
        self.connected = asyncio.Event()
        self.outbox: asyncio.Queue[tuple[WebhookKind, str, str, dict[str, str]]] = asyncio.Queue()
        self._helpers: set[asyncio.Task[None]] = set()
        self._log = log.bind(call_sid=self.sid)

    # -- for tests -----------------------------------------------------------------------------------

    @property
    def statuses(self) -> list[str]:
        """CallStatus of each status callback sent, in order."""
        return [w.params["CallStatus"] for w in self.webhooks if w.kind == "status"]

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    @property
    def caller(self) -> SimulatedCaller | None:
        """The Media Streams side of the latest ``<Connect><Stream>`` (what the callee heard and said)."""
        return self.streams[-1].caller if self.streams else None

    def webhooks_of(self, kind: WebhookKind) -> list[Webhook]:
        return [w for w in self.webhooks if w.kind == kind]

    async def wait_connected(self, limit_s: float = 10.0) -> SimulatedCaller:
        """Wait until a Media Stream is up and return its caller."""
        async with asyncio.timeout(limit_s):
            await self.connected.wait()
        caller = self.caller
        assert caller is not None
        return caller

    async def wait_ended(self, limit_s: float = 30.0) -> str:
        """Wait for the call to end (every status callback delivered) and return its final status."""
        async with asyncio.timeout(limit_s):
            await self.ended.wait()
        return self.status

    # -- state ---------------------------------------------------------------------------------------

    def set_status(self, status: str) -> None:
        if self.status in TERMINAL:
            return
        self.status = status
        self.date_updated = utcnow()

    def request_stop(self, by: str) -> None:
        if self.ended.is_set() or self.stop_requested is not None:
            return
        self.stop_requested = by
        self.wake.set()

    def request_redirect(self, source: Source) -> None:
        self.redirect = source
        self.wake.set()

    def take_redirect(self) -> Source | None:
        source, self.redirect = self.redirect, None
        if self.stop_requested is None:
            self.wake.clear()
        return source

    def spawn(self, work: Coroutine[Any, Any, None], role: str) -> asyncio.Task[None]:
        """A helper that lives no longer than the call (timers, AMD, the callee's voice)."""
        task = asyncio.create_task(work, name=f"twilio-sim-{role}-{self.sid}")
        self._helpers.add(task)
        task.add_done_callback(self._helper_done)
        return task

    def _helper_done(self, task: asyncio.Task[None]) -> None:
        self._helpers.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._log.error("twilio_sim.helper_failed", task=task.get_name(), exc_info=task.exception())

    async def stop_helpers(self) -> None:
        current = asyncio.current_task()
        helpers = [task for task in self._helpers if task is not current]
        for task in helpers:
            task.cancel()
        if helpers:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait(helpers)

    def end(self, status: str) -> None:
        self.set_status(status)
        self.end_time = utcnow()
        self.ended_at = now()
        self.date_updated = self.end_time

    @property
    def duration_s(self) -> int | None:
        if self.answered_at is None:
            return 0 if self.ended_at is not None else None
        end = self.ended_at if self.ended_at is not None else now()
        return round(end - self.answered_at)

    # -- shapes --------------------------------------------------------------------------------------

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{self.sid}.json"

    def resource(self) -> dict[str, Any]:
        """The Call resource as the REST API returns it."""
        base = self.uri.removesuffix(".json")
        return {
            "sid": self.sid,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "parent_call_sid": None,
            "account_sid": self.account_sid,
            "to": self.to,
            "to_formatted": formatted(self.to),
            "from": self.from_,
            "from_formatted": formatted(self.from_),
            "phone_number_sid": None,
            "status": self.status,
            "start_time": rfc2822(self.start_time),
            "end_time": rfc2822(self.end_time),
            "duration": str(self.duration_s) if self.ended_at is not None else None,
            "price": None,
            "price_unit": "USD",
            "direction": self.direction,
            "answered_by": self.answered_by,
            "annotation": None,
            "api_version": API_VERSION,
            "forwarded_from": None,
            "group_sid": None,
            "caller_name": None,
            "queue_time": "0",
            "trunk_sid": None,
            "uri": self.uri,
            "subresource_uris": {
                name: f"{base}/{path}.json"
                for name, path in (
                    ("notifications", "Notifications"),
                    ("recordings", "Recordings"),
                    ("streams", "Streams"),
                    ("events", "Events"),
                    ("payments", "Payments"),
                    ("siprec", "Siprec"),
                    ("transcriptions", "Transcriptions"),
                    ("user_defined_messages", "UserDefinedMessages"),
                    ("user_defined_message_subscriptions", "UserDefinedMessageSubscriptions"),
                )
            },
        }

    def record(self) -> dict[str, Any]:
        """Everything the sim saw, for ``GET /sim/calls``."""
        return {
            "sid": self.sid,
            "direction": self.direction,
            "from": self.from_,
            "to": self.to,
            "status": self.status,
            "answered_by": self.answered_by,
            "hung_up_by": self.hung_up_by,
            "duration": self.duration_s,
            "ended": self.ended.is_set(),
            "statuses": self.statuses,
            "webhooks": [w.record() for w in self.webhooks],
            "twiml": list(self.twiml),
            "said": list(self.said),
            "played": list(self.played),
            "transfers": [t.record() for t in self.transfers],
            "streams": [s.record() for s in self.streams],
            "skipped": list(self.skipped),
            "errors": list(self.errors),
        }


@dataclass(slots=True)
class SimMessage:
    """An SMS sent through the REST API (kept for tests; delivery is immediate)."""

    account_sid: str
    to: str
    from_: str | None
    body: str
    messaging_service_sid: str | None = None
    status_callback: str | None = None
    sid: str = field(default_factory=lambda: new_sid("SM"))
    status: str = "queued"
    date_created: datetime = field(default_factory=utcnow)
    date_updated: datetime = field(default_factory=utcnow)
    date_sent: datetime | None = None
    error_code: int | None = None
    """Why it was not delivered (``undelivered``/``failed``), as Twilio's error code."""
    error_message: str | None = None
    webhooks: list[Webhook] = field(default_factory=list)

    @property
    def uri(self) -> str:
        return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{self.sid}.json"

    def set_status(self, status: str) -> None:
        self.status = status
        self.date_updated = utcnow()
        if status == "sent":
            self.date_sent = self.date_updated

    def resource(self) -> dict[str, Any]:
        return {
            "sid": self.sid,
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": self.body,
            "date_created": rfc2822(self.date_created),
            "date_updated": rfc2822(self.date_updated),
            "date_sent": rfc2822(self.date_sent),
            "direction": "outbound-api",
            "error_code": self.error_code,
            "error_message": self.error_message,
            "from": self.from_,
            "messaging_service_sid": self.messaging_service_sid,
            "num_media": "0",
            "num_segments": str(max(1, -(-len(self.body) // 153))) if len(self.body) > 160 else "1",
            "price": None,
            "price_unit": "USD",
            "status": self.status,
            "subresource_uris": {"media": self.uri.removesuffix(".json") + "/Media.json"},
            "to": self.to,
            "uri": self.uri,
        }

    def record(self) -> dict[str, Any]:
        return {**self.resource(), "webhooks": [w.record() for w in self.webhooks]}
