"""Phone legs in coached rooms: dial a person into a room through Twilio, and carry that call's audio.

- ``POST /v1/rooms/{id}/calls`` (API key, the organization's own room) invites a participant and dials
  ``to`` through Twilio's REST API with inline TwiML: ``<Connect><Stream>`` to this server's
  ``/v1/rooms/twilio-stream``, the room and the participant's single-use join token as ``<Parameter>``s.
  The caller id is ``from`` (one of the organization's numbers), else ``PARLEY_TWILIO_CALLER_ID``,
  else the organization's first number, as for outbound calls.
- ``WS /v1/rooms/twilio-stream``: Twilio opens it once the callee answers. The upgrade is checked as
  ``/twilio/stream``'s is (``twilio_stream.admit``: Twilio's signature of the stream URL, 403; 503
  without an auth token); ``start`` must carry a room and a live join token for it, or the stream
  closes (1008) before anything joins. The stream is then a room leg (``TwilioRoomLeg``).
- ``POST /v1/rooms/twilio-status``: the dialed call's progress, signed by Twilio; a call that ends
  without its stream in the room (busy, no answer, failed) withdraws the invitation, and one that ends
  with it takes the participant out (``hangup``).

Each dialed call is a phone leg on the room's call (``metadata.phone_legs``, kept by ``LiveRooms``): its
CallSid, the number dialed and the caller id when it is placed; how it ended and Twilio's
``CallDuration`` when its final status callback comes, even after the room has ended (the callback URL
names the room's call). An answered leg's minutes are the room call's telephony, priced as an outbound
phone call's (``usage.phone_leg_lines``).

A stream's signature covers only its URL, so the join token (made for this call, known to Twilio and
Parley only, spent on use) is what decides which room and participant a stream may be.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, WebSocket, status
from pydantic import BaseModel, ConfigDict, Field

from parley.config import Settings
from parley.engine.events import EventType
from parley.inputs import E164, PlainName
from parley.jobs.outbound import PERMANENT_REFUSALS
from parley.platform.coached_room import CoachedRoom
from parley.platform.live_rooms import LEG_ENDED, LiveRooms, RoomNotFound
from parley.platform.room_roster import JoinRefused
from parley.rooms import Mode, RoomError, UnknownParticipant
from parley.server.auth import Auth, PlatformDep, get_platform
from parley.server.rooms import get_rooms, invite
from parley.server.routes.params import Ref
from parley.server.routes.twilio import twilio_rest
from parley.server.runtime import LiveRuntime
from parley.server.twilio_stream import admit, await_start, mulaw_mono, relay_stream
from parley.server.ws_input import accepted
from parley.server.ws_outbound import WsConnection
from parley.telephony.number_rules import RefusedNumber, check_callee
from parley.telephony.rest import TwilioRestError
from parley.telephony.signatures import TwilioWebhook, public_base_url, twilio_webhook
from parley.telephony.twiml import stream_twiml, stream_url
from parley.transports.twilio_protocol import Start
from parley.transports.twilio_room_leg import HANGUP, TwilioRoomLeg

log = structlog.get_logger("parley.server.room_phone")

ROOM_STREAM_PATH = "/v1/rooms/twilio-stream"
ROOM_STATUS_PATH = "/v1/rooms/twilio-status"
ROOM_ID = re.compile(r"^room_[0-9a-f]{1,32}$")
PARTICIPANT_ID = re.compile(r"^p_[0-9a-f]{1,32}$")
CALL_ID = re.compile(r"^call_[0-9a-f]{1,32}$")
CALL_SID = re.compile(r"^CA[0-9a-f]{32}$")
CALL_DURATION = re.compile(r"^[0-9]{1,7}$")
MAX_TOKEN_CHARS = 128
ENDED = LEG_ENDED
NOT_ANSWERED = ENDED - {"completed"}

router = APIRouter(tags=["rooms"])


class RoomCallCreate(BaseModel):
    """Dial a person into a live room: they join as ``role`` once they answer."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: E164 = Field(description="who to call, E.164; not one of the organization's own numbers")
    role: Literal["customer", "rep", "coach"] = Field(description="who they are in the room")
    mode: Mode | None = Field(None, description="default: listen for a coach, speak for anyone else")
    from_: E164 | None = Field(
        None,
        alias="from",
        description="caller id: one of the organization's numbers; default PARLEY_TWILIO_CALLER_ID, "
        "else the organization's first phone number",
    )
    name: PlainName = Field("", max_length=120, description="shown to the others in the room")


class RoomCallOut(BaseModel):
    participant_id: str
    call_sid: str
    role: str
    mode: str


def room_stream_url(base_url: str) -> str:
    return stream_url(base_url, ROOM_STREAM_PATH)


def _refusal(exc: TwilioRestError) -> HTTPException:
    """Twilio's refusal with its code: 422 for a number no retry can reach, else 502."""
    permanent = exc.code is not None and f"twilio:{exc.code}" in PERMANENT_REFUSALS
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT if permanent else status.HTTP_502_BAD_GATEWAY,
        {"message": f"Twilio refused the call: {exc.message}", "twilio_code": exc.code},
    )


@router.post(
    "/v1/rooms/{room_id}/calls",
    status_code=status.HTTP_201_CREATED,
    responses={
        404: {"description": "no such live room"},
        409: {"description": "the room has ended or is full"},
        422: {
            "description": "a number that cannot be called (premium-rate, the organization's own) or used "
            "as caller id"
        },
        502: {"description": "Twilio refused the call (its error code is in `twilio_code`)"},
        503: {"description": "Twilio is not configured"},
    },
)
async def dial_into_room(
    room_id: Ref, body: RoomCallCreate, request: Request, principal: Auth, platform: PlatformDep
) -> RoomCallOut:
    """Call a phone number and bring whoever answers into the room (as customer, rep or coach). The
    participant is listed at once, not connected; it connects when the call is answered and leaves
    when it hangs up. A call that is not answered withdraws it."""
    rest = twilio_rest(request)
    if rest is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "Twilio is not configured on this server (PARLEY_TWILIO_ACCOUNT_SID, PARLEY_TWILIO_AUTH_TOKEN)",
        )
    try:
        room = get_rooms(request).get(principal.org_id, room_id)
    except RoomNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    settings = platform.settings
    own = [n.number for n in await platform.phone.numbers(principal.org_id)]
    try:
        check_callee(body.to, own=body.to in own)  # the outbound queue's rule: no loop-back, no premium rate
    except RefusedNumber as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    caller = _caller_id(body.from_, own, settings)
    participant, token = invite(room, body.role, body.mode, body.name)
    base = public_base_url(request, settings)
    twiml = stream_twiml(room_stream_url(base), {"room": room.id, "token": token})
    callback = f"{base}{ROOM_STATUS_PATH}?room={room.id}&participant={participant.id}&call={room.call.id}"
    bound = log.bind(room_id=room.id, participant_id=participant.id, org_id=principal.org_id)
    try:
        sid = await rest.place_call(
            to=body.to,
            from_=caller,
            twiml=twiml,
            status_callback=callback,
            timeout_s=settings.outbound_ring_timeout_s,
        )
    except TwilioRestError as exc:
        with contextlib.suppress(UnknownParticipant):
            await room.remove(participant.id, reason="dial_failed")
        bound.warning("dialing into a room failed", code=exc.code, error=exc.message)
        raise _refusal(exc) from exc
    bound.info("dialed into a room", call_sid=sid, role=body.role)
    try:
        await get_rooms(request).phone_leg_dialed(
            room.call.id, participant, call_sid=sid, to=body.to, from_=caller
        )
    except Exception:  # the phone rings all the same; its final status callback still records the leg
        bound.exception("keeping a dialed phone leg on the room's call failed", call_sid=sid)
    return RoomCallOut(
        participant_id=participant.id, call_sid=sid, role=str(participant.role), mode=str(participant.mode)
    )


def _caller_id(requested: str | None, own: list[str], settings: Settings) -> str:
    """``from`` if it is the organization's; else the configured caller id; else its first number."""
    if requested is not None:
        if requested not in own and requested != settings.twilio_caller_id:
            raise HTTPException(
                status.HTTP_422_UNPROCESSABLE_CONTENT, "from must be one of the organization's phone numbers"
            )
        return requested
    if settings.twilio_caller_id:
        return settings.twilio_caller_id
    if own:
        return own[0]
    raise HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        "no number to call from: pass from, set PARLEY_TWILIO_CALLER_ID, or add a phone number",
    )


# --- Twilio's side ----------------------------------------------------------------------------------


def _settings(request: Request) -> Settings:
    return get_platform(request).settings


Webhook = Annotated[TwilioWebhook, Depends(twilio_webhook(_settings))]


@router.post(ROOM_STATUS_PATH, status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def room_call_status(
    request: Request,
    hook: Webhook,
    room: Annotated[str, Query(max_length=40, pattern=ROOM_ID.pattern)],
    participant: Annotated[str, Query(max_length=40, pattern=PARTICIPANT_ID.pattern)],
    call: Annotated[str | None, Query(max_length=40, pattern=CALL_ID.pattern)] = None,
) -> Response:
    """A dialed participant's call progress (Twilio's status callback). Only the end matters here: the
    participant leaves a room still live, and the leg's end is kept on the room's call (and billed)."""
    call_status = hook.get("CallStatus") or ""
    if call_status not in ENDED:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    rooms = get_rooms(request)
    live = rooms.find(room)
    call_sid = hook.get("CallSid") or ""
    bound = log.bind(room_id=room, participant_id=participant, call_id=call, call_sid=call_sid[:40])
    if live is not None and call is not None and live.call.id != call:
        bound.warning("a room's status callback names another call", room_call_id=live.call.id)
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    if live is not None and not live.ended:
        await _leave(live, participant, call_status)
    call_id = call or (live.call.id if live is not None else None)  # URLs of calls dialed before ``call``
    if call_id is None or not CALL_SID.match(call_sid):
        bound.warning("a room's phone leg ended with no call to keep it on")
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    duration = hook.get("CallDuration")
    seconds = int(duration) if duration is not None and CALL_DURATION.match(duration) else None
    if duration is not None and seconds is None:
        bound.warning("a room's phone leg ended with a CallDuration that is no duration", value=duration[:40])
    await rooms.phone_leg_ended(
        call_id, participant, call_sid=call_sid, status=call_status, duration_s=seconds
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _leave(live: CoachedRoom, participant: str, call_status: str) -> None:
    """The participant whose phone call ended leaves the room (its invitation withdrawn if it never
    joined); nothing to do if it left already (the stream stopped)."""
    member = next((p for p in live.participants() if p["id"] == participant), None)
    if member is None:
        return
    reason = HANGUP if member["connected"] else call_status.replace("-", "_")
    with contextlib.suppress(UnknownParticipant):
        await live.remove(participant, reason=reason)
    log.info("a room's phone call ended", room_id=live.id, participant_id=participant, status=call_status)


@router.websocket(ROOM_STREAM_PATH)
async def room_stream(websocket: WebSocket) -> None:
    runtime: LiveRuntime = websocket.app.state.runtime
    if not await admit(websocket, runtime):
        return
    address = websocket.client.host if websocket.client is not None else "unknown"
    async with accepted(websocket, runtime) as connection:
        await _serve(websocket, connection, address, runtime.settings.twilio_jitter_ms)


def _room_for(websocket: WebSocket, start: Start) -> tuple[CoachedRoom, str] | None:
    """The room and token ``start`` names, if the token would let someone join it now."""
    room_id = start.custom_parameters.get("room", "")
    token = start.custom_parameters.get("token", "")
    if not ROOM_ID.match(room_id) or not 0 < len(token) <= MAX_TOKEN_CHARS:
        return None
    rooms = getattr(websocket.app.state, "rooms", None)
    room = rooms.find(room_id) if isinstance(rooms, LiveRooms) else None
    if room is None or not room.check_token(token):
        return None
    return room, token


async def _serve(websocket: WebSocket, connection: WsConnection, address: str, jitter_ms: int) -> None:
    stream_log = log.bind(client=address)
    start = await await_start(websocket, connection, stream_log)
    if start is None:
        return
    stream_log = stream_log.bind(call_sid=start.call_sid, stream_sid=start.stream_sid)
    if not mulaw_mono(start, connection, stream_log, "twilio.room_stream_refused"):
        return
    found = _room_for(websocket, start)
    if found is None:
        stream_log.warning("twilio.room_stream_refused", reason="no live room for this room and token")
        connection.close(1008, "unknown room or token")
        return
    room, token = found
    stream_log = stream_log.bind(room_id=room.id)

    def pressed(digit: str) -> None:
        """A key the phone participant pressed: on the call's timeline, as a live call's are."""
        room.emit(EventType.DTMF, participant_id=bridge.leg.id if bridge.leg else None, digit=digit)

    bridge = TwilioRoomLeg(
        start.stream_sid,
        connection.send_message_raw,
        connection.close,
        on_dtmf=pressed,
        jitter_ms=jitter_ms,
        room_id=room.id,
        call_sid=start.call_sid,
    )
    try:
        leg = room.connect(
            token,
            bridge,
            lambda _message: None,  # a phone line has no use for the pages' JSON
            lambda reason: bridge.hang_up(1000, reason),
        )
    except (JoinRefused, RoomError) as exc:
        stream_log.warning("twilio.room_stream_refused", reason=str(exc))
        connection.close(1008, "unknown room or token")
        return
    bridge.attach(leg, lambda reason: room.remove(leg.id, reason=reason))
    stream_log.info("twilio.room_stream_connected", participant_id=leg.id, role=str(leg.participant.role))
    try:
        await relay_stream(websocket, bridge.on_text, until=lambda: bridge.gone or bridge.closed)
    except Exception:  # a bug: this leg ends, the room and the server go on
        stream_log.exception("twilio.room_stream_failed", participant_id=leg.id)
    finally:
        bridge.hung_up()
        await bridge.aclose()
