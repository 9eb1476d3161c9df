"""``/twilio/stream``: a phone call's Twilio Media Stream (``<Connect><Stream>``) as a live session.

Who may connect is settled before the upgrade completes: ``X-Twilio-Signature`` must be Twilio's
signature of the stream URL (no parameters) with the account's auth token, else HTTP 403; without an
auth token configured, 503. Twilio then says ``connected`` and ``start``; ``start``'s custom parameter
``call_id`` names the call the voice webhook or the outbound queue put on the books, which must be a
Twilio call with this ``callSid`` that has not ended. A stream's signature covers only its URL, so the
same header could be replayed: it is this binding to a live carrier call (known only to Twilio and to
Parley) that decides which call a stream may carry, and one call takes one stream.

The phone leg itself (jitter buffer, μ-law, marks, drain) is ``parley/transports/twilio_media.py``; it
sends through the same ordered, bounded writer as the browser WebSocket (``WsConnection``).
Messages: https://www.twilio.com/docs/voice/media-streams/websocket-messages; signatures:
https://www.twilio.com/docs/usage/security#validating-requests (``parley/telephony/signatures.py``).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Protocol

import structlog
from fastapi import APIRouter, WebSocket
from fastapi.responses import PlainTextResponse
from structlog.typing import FilteringBoundLogger

from parley.config import Settings
from parley.engine.events import now
from parley.engine.transport import ControlUnavailable
from parley.platform.phone import PHONE_TRANSPORT
from parley.server.registry import AdmissionError
from parley.server.runtime import Client, LiveRuntime
from parley.server.ws_input import accepted
from parley.server.ws_outbound import GONE, WsConnection
from parley.telephony.signatures import validate
from parley.telephony.twiml import STREAM_PATH, stream_url
from parley.transports.twilio_media import HUNG_UP, TwilioMediaLeg
from parley.transports.twilio_protocol import (
    ULAW_RATE,
    Connected,
    Start,
    Stop,
    TwilioProtocolError,
    parse_message,
)
from parley.transports.ws_protocol import ErrorCode

log = structlog.get_logger("parley.server.twilio_stream")

SIGNATURE_HEADER = "X-Twilio-Signature"
START_TIMEOUT_S = 10.0
"""Twilio sends ``connected`` and ``start`` right after the upgrade; a stream silent this long is dropped."""
CALL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MULAW = "audio/x-mulaw"
LOGGED_BAD_MESSAGES = 5

_REFUSAL_CLOSE = {
    ErrorCode.CAPACITY: 1013,
    ErrorCode.SHUTTING_DOWN: 1013,
    ErrorCode.NOT_READY: 1011,
}


class CallTransfer(Protocol):
    """What a transfer needs of Twilio's REST API (``parley.telephony.rest.TwilioRest``)."""

    async def transfer(self, call_sid: str, target: str) -> None: ...


def signed_url(websocket: WebSocket, settings: Settings) -> str:
    """The URL Twilio signed: the stream URL the TwiML named (from ``public_url`` behind a proxy), else
    the one this request came to."""
    if settings.public_url:
        url = stream_url(settings.public_url, websocket.url.path)
        query = websocket.url.query
        return f"{url}?{query}" if query else url
    return str(websocket.url)


def signature_valid(websocket: WebSocket, settings: Settings, auth_token: str) -> bool:
    """Twilio signs a stream's upgrade like a webhook with no POST parameters."""
    return validate(signed_url(websocket, settings), (), websocket.headers.get(SIGNATURE_HEADER), auth_token)


async def _deny(websocket: WebSocket, status: int, message: str) -> None:
    """Refuse the upgrade with an HTTP status (a server without the denial extension answers 403)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(message, status_code=status))
    else:
        await websocket.close(code=1008, reason=message[:120])


async def admit(websocket: WebSocket, runtime: LiveRuntime) -> bool:
    """Whether Twilio may open this stream (any stream route): refused with 503 while Twilio is not
    configured, 403 without Twilio's signature of the stream URL; nothing is read or accepted before."""
    settings = runtime.settings
    address = websocket.client.host if websocket.client is not None else "unknown"
    refused = log.bind(client=address, path=websocket.url.path)
    token = settings.twilio_auth_token
    if token is None or not token.get_secret_value():
        refused.warning("twilio.stream_refused", reason="Twilio is not configured (PARLEY_TWILIO_AUTH_TOKEN)")
        await _deny(websocket, 503, "Twilio is not configured on this server")
        return False
    if not signature_valid(websocket, settings, token.get_secret_value()):
        runtime.metrics.protocol_error(str(ErrorCode.UNAUTHORIZED))
        refused.warning(
            "twilio.stream_refused",
            reason="missing or wrong X-Twilio-Signature",
            signed=SIGNATURE_HEADER.lower() in websocket.headers,
            url=signed_url(websocket, settings),
        )
        await _deny(websocket, 403, "missing or wrong X-Twilio-Signature")
        return False
    return True


def twilio_stream_router(runtime: LiveRuntime) -> APIRouter:
    router = APIRouter()

    @router.websocket(STREAM_PATH)
    async def twilio_stream(websocket: WebSocket) -> None:
        address = websocket.client.host if websocket.client is not None else "unknown"
        if not await admit(websocket, runtime):
            return
        async with accepted(websocket, runtime) as connection:
            await _serve_stream(runtime, websocket, connection, address)

    return router


async def _serve_stream(
    runtime: LiveRuntime, websocket: WebSocket, connection: WsConnection, address: str
) -> None:
    stream_log = log.bind(client=address)
    start = await await_start(websocket, connection, stream_log)
    started_at = now()  # the stream's clock starts here: media timestamps count from ``start``
    if start is None:
        return
    call_id = start.custom_parameters.get("call_id", "")
    stream_log = stream_log.bind(
        call_id=call_id or None, call_sid=start.call_sid, stream_sid=start.stream_sid
    )
    if not mulaw_mono(start, connection, stream_log, "twilio.stream_refused"):
        return
    if not CALL_ID.match(call_id):
        stream_log.warning("twilio.stream_refused", reason="start names no call (customParameters.call_id)")
        connection.close(1008, "unknown call")
        return
    try:
        live = await runtime.open_phone_session(
            call_id, client=Client(address, PHONE_TRANSPORT), call_sid=start.call_sid
        )
    except AdmissionError as exc:
        runtime.metrics.protocol_error(str(exc.code))
        stream_log.warning("twilio.stream_refused", reason=exc.message, code=str(exc.code))
        connection.close(_REFUSAL_CLOSE.get(exc.code, 1008), str(exc.code))
        return
    settings = runtime.settings
    connection.session_id = live.id
    leg = TwilioMediaLeg(
        live,
        start.stream_sid,
        connection.send_message_raw,
        connection.close,
        call_id=call_id,
        call_sid=start.call_sid,
        jitter_ms=settings.twilio_jitter_ms,
        started_at=started_at,
    )

    async def transfer(target: str) -> None:
        rest: CallTransfer | None = getattr(websocket.app.state, "twilio_rest", None)
        if rest is None:
            raise ControlUnavailable("Twilio's REST API is not configured on this server")
        # Twilio drops the audio it has not played as it leaves the stream: the caller first hears the
        # agent out. It may stop the stream before its answer to the request is back: the end of the
        # stream is the transfer's from the moment it is asked for.
        await leg.wait_heard("transfer")
        leg.hangup_reason = "transferred"
        try:
            await rest.transfer(start.call_sid, target)
        except Exception:
            leg.hangup_reason = HUNG_UP  # not sent on: a stream ending now is the caller hanging up
            raise

    live.controls.transfer_handler = transfer
    live.controls.dtmf_handler = leg.send_digits
    live.attach(leg)
    stream_log.info("twilio.stream_connected", session_id=live.id)
    try:
        await relay_stream(websocket, leg.on_text)
    except Exception:  # a bug: this call ends, the server lives on
        stream_log.exception("twilio.stream_failed", session_id=live.id)
        live.end("internal_error")
    finally:
        leg.hung_up()
        live.detach(leg)
        await leg.aclose()


async def relay_stream(
    websocket: WebSocket, on_text: Callable[[str | bytes], None], until: Callable[[], bool] = lambda: False
) -> None:
    """Hand Twilio's messages to a leg until the stream closes, breaks (Twilio is gone, as after a
    hang-up) or ``until`` says the leg is done. What the leg raises is a bug, and is the caller's."""
    try:
        while not until():
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            on_text(text if text is not None else message.get("bytes") or b"")
    except GONE:
        return


def mulaw_mono(
    start: Start, connection: WsConnection, stream_log: FilteringBoundLogger, refused: str
) -> bool:
    """Whether the stream carries what a phone leg takes (μ-law 8 kHz mono); if not, it is refused
    (logged as ``refused``) and closes with 1003."""
    fmt = start.media_format
    if (fmt.encoding, fmt.sample_rate, fmt.channels) == (MULAW, ULAW_RATE, 1):
        return True
    stream_log.warning(refused, reason=f"media format {fmt} is not μ-law 8 kHz mono")
    connection.close(1003, "unsupported media format")
    return False


async def await_start(
    websocket: WebSocket, connection: WsConnection, stream_log: FilteringBoundLogger
) -> Start | None:
    """Twilio's ``start`` (after ``connected``), or None, the stream closing (1008): it went away,
    stopped or stayed silent."""
    start = await _first_start(websocket, stream_log)
    if start is None:
        connection.close(1008, "no start")
    return start


async def _first_start(websocket: WebSocket, stream_log: FilteringBoundLogger) -> Start | None:
    bad = 0
    try:
        async with asyncio.timeout(START_TIMEOUT_S):
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    stream_log.info("twilio.stream_closed_before_start")
                    return None
                text = message.get("text")
                try:
                    parsed = parse_message(text if text is not None else message.get("bytes") or b"")
                except TwilioProtocolError as exc:
                    bad += 1
                    if bad <= LOGGED_BAD_MESSAGES:
                        stream_log.warning("twilio.bad_message", kind=exc.kind, error=str(exc)[:300])
                    continue
                if isinstance(parsed, Start):
                    return parsed
                if isinstance(parsed, Stop):
                    stream_log.info("twilio.stream_stopped_before_start")
                    return None
                if not isinstance(parsed, Connected):
                    stream_log.warning(
                        "twilio.bad_message", kind="before_start", message=type(parsed).__name__
                    )
    except TimeoutError:
        stream_log.warning("twilio.stream_refused", reason=f"no 'start' within {START_TIMEOUT_S:g} s")
        return None
    except GONE:
        return None
