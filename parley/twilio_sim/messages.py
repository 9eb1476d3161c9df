"""The local Twilio's Messages resource: texts sent through the REST API, and their status callbacks.

REST (https://www.twilio.com/docs/messaging/api/message-resource):
``POST /2010-04-01/Accounts/{Sid}/Messages.json`` with ``To``, ``From`` (or ``MessagingServiceSid``),
``Body``, ``StatusCallback`` answers 201 with the Message (``sid`` "SM…", ``status`` "queued", or
"accepted" through a Messaging Service); a ``To`` that is no phone number is Twilio's 400 with code 21211,
a missing body 21602, one over 1,600 characters 21617. ``GET Messages.json`` lists them newest first
(filters ``To``, ``From``), ``GET Messages/{Sid}.json`` fetches one.

Then, as Twilio does (https://www.twilio.com/docs/messaging/guides/outbound-message-status-in-status-callbacks:
no callback for the initial status), it moves each message on — sent, then delivered, or undelivered with an
``ErrorCode`` for a number scripted unreachable (``sim.sms.unreachable(number)``) — and posts each status to
the message's ``StatusCallback``, signed (``X-Twilio-Signature``) like every webhook of the sim. Every
message is kept (``sim.messages``, ``GET /sim/messages``) so tests can count what was sent, and twice.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from parley.twilio_sim.resources import API_VERSION, RestError, SimMessage, list_page, phone_number

if TYPE_CHECKING:
    from parley.twilio_sim.rest_app import Form
    from parley.twilio_sim.server import TwilioSim

MAX_BODY_CHARS = 1600
"""Longest SMS body Twilio accepts (error 21617)."""
STEP_S = 0.01
"""Between one status and the next (a real carrier takes seconds)."""
UNREACHABLE = 30003
"""Twilio's "Unreachable destination handset" (https://www.twilio.com/docs/api/errors/30003)."""


class SimMessages:
    """The texts of one local Twilio account."""

    def __init__(self, sim: TwilioSim) -> None:
        self.sim = sim
        self.messages: dict[str, SimMessage] = {}
        self._unreachable: dict[str, tuple[str, int]] = {}

    def unreachable(self, number: str, *, code: int = UNREACHABLE, status: str = "undelivered") -> None:
        """Texts to ``number`` end ``status`` (``undelivered`` or ``failed``) with error ``code``."""
        key = phone_number(number) or number
        self._unreachable[key] = (status, code)

    def create(self, form: Form) -> SimMessage:
        """``POST Messages.json`` (https://www.twilio.com/docs/messaging/api/message-resource#create-a-message-resource)."""
        to_raw, from_raw = form.one("To"), form.one("From")
        service = form.one("MessagingServiceSid") or None
        if not to_raw:
            raise RestError(400, 21604, "A 'To' phone number is required.")
        to = phone_number(to_raw)
        if to is None or to.startswith(("sip:", "client:")):
            raise RestError(400, 21211, f"Invalid 'To' Phone Number: {to_raw}")
        if not from_raw and service is None:
            raise RestError(400, 21603, "A 'From' phone number is required.")
        from_ = phone_number(from_raw) if from_raw else None
        if from_raw and from_ is None:
            raise RestError(400, 21212, f"Invalid 'From' Phone Number: {from_raw}")
        body = form.one("Body") or ""
        if not body and not form.many("MediaUrl"):
            raise RestError(400, 21602, "Message body is required.")
        if len(body) > MAX_BODY_CHARS:
            raise RestError(400, 21617, "The concatenated message body exceeds the 1600 character limit.")
        message = SimMessage(
            account_sid=self.sim.account_sid,
            to=to,
            from_=from_,
            body=body,
            messaging_service_sid=service,
            status_callback=form.one("StatusCallback") or None,
            status="accepted" if from_ is None else "queued",
        )
        self.messages[message.sid] = message
        self.sim._track(asyncio.create_task(self._deliver(message), name=f"twilio-sim-sms-{message.sid}"))
        return message

    async def _deliver(self, message: SimMessage) -> None:
        """Sent, then delivered (or undelivered), with a status callback for each, in order."""
        ending = self._unreachable.get(message.to)
        steps = ["sent", ending[0] if ending else "delivered"]
        for status in steps:
            await asyncio.sleep(STEP_S)
            message.set_status(status)
            if ending is not None and status == ending[0]:
                message.error_code = ending[1]
                message.error_message = "Unreachable destination handset"
            if message.status_callback is None:
                continue
            params = {
                "AccountSid": message.account_sid,
                "ApiVersion": API_VERSION,
                "From": message.from_ or "",
                "MessageSid": message.sid,
                "MessageStatus": status,
                "SmsSid": message.sid,
                "SmsStatus": status,
                "To": message.to,
            }
            if message.error_code is not None:
                params["ErrorCode"] = str(message.error_code)
            if message.messaging_service_sid:
                params["MessagingServiceSid"] = message.messaging_service_sid
            await self.sim._send(message.webhooks, "message-status", message.status_callback, "POST", params)


def register_message_routes(app: FastAPI, sim: TwilioSim) -> None:
    """The Messages REST paths, and ``GET /sim/messages`` (every message with its callbacks)."""
    # the server imports this module: bind at call time
    from parley.twilio_sim.rest_app import Form

    prefix = f"/{API_VERSION}/Accounts/{{account}}"
    texts = sim.sms

    @app.post(prefix + "/Messages.json")
    async def create_message(account: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        message = texts.create(Form(await request.body()))
        return JSONResponse(message.resource(), status_code=201)

    @app.get(prefix + "/Messages.json")
    async def list_messages(account: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        query = request.query_params
        to = phone_number(query["To"]) if query.get("To") else None
        from_ = phone_number(query["From"]) if query.get("From") else None
        newest = sorted(texts.messages.values(), key=lambda m: m.date_created, reverse=True)
        items = [
            m.resource()
            for m in newest
            if (not query.get("To") or m.to == to) and (not query.get("From") or m.from_ == from_)
        ]
        return JSONResponse(list_page("messages", items, request.url.path))

    @app.get(prefix + "/Messages/{sid}.json")
    async def fetch_message(account: str, sid: str, request: Request) -> JSONResponse:
        sim.authenticate(request, account)
        message = texts.messages.get(sid)
        if message is None:
            raise RestError(404, 20404, f"The requested resource {request.url.path} was not found")
        return JSONResponse(message.resource())

    @app.get("/sim/messages")
    async def sim_messages() -> JSONResponse:
        return JSONResponse({"messages": [message.record() for message in texts.messages.values()]})
