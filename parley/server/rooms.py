"""``/v1/rooms``: coached calls over HTTP (create, invite, supervise, end) and each participant's WebSocket.

The REST routes authenticate with an API key, like every platform route, and see only the key's
organization's rooms. A participant's socket (``/v1/rooms/{id}/ws?token=…``) needs no key: the
single-use join token ``POST /v1/rooms/{id}/participants`` returned is its right to join. The socket
carries PCM16 both ways in the live protocol's binary frames (``transports/ws_protocol.py``) and JSON
messages: the client sends ``start`` (its sample rate), ``ping`` and ``leave``; the server sends
``ready``, ``participants``, ``utterance``, ``hint``, ``metrics``, ``mode``, ``pong``, ``error`` and
``ended`` (docs/coaching.md, "Delivery"). Bad input is an ``error`` message, never a crash; a bad token
closes the socket with 1008 before anything joins. ``serve_leg_socket`` is that socket for any
``Joinable`` call: supervisors of a live AI call join through it too (``server/supervision.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Protocol
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, WebSocket, status
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from parley.audio.frame import AudioFrame
from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.events import now
from parley.engine.options import EngineStack
from parley.engine.transport import AudioOutput
from parley.inputs import JsonObject, PlainName, SafeStr
from parley.platform.agents import NotFound
from parley.platform.coached_room import CoachedRoom, RoomUnavailable
from parley.platform.live_rooms import LiveRooms, RoomNotFound, TooManyRooms
from parley.platform.room_record import RESERVED_METADATA
from parley.platform.room_roster import JoinRefused
from parley.platform.schemas import MAX_CALL_METADATA_BYTES, Page
from parley.rooms import InvalidParticipant, Leg, Mode, Participant, RoomClosed, RoomFull, UnknownParticipant
from parley.rooms.model import MAX_NAME_CHARS, Role
from parley.server.auth import Auth
from parley.server.runtime import LiveRuntime
from parley.server.ws_input import WsInput, accepted, admit_client, check_sample_rate, relay
from parley.server.ws_outbound import WsConnection
from parley.transports.ws_protocol import ErrorCode, ProtocolError, error_message, server_message

log = structlog.get_logger("parley.server.rooms")

router = APIRouter(prefix="/v1/rooms", tags=["rooms"])

RoomId = Annotated[SafeStr, Path(min_length=1, max_length=64, description="a room id (`room_…`)")]
ParticipantId = Annotated[SafeStr, Path(min_length=1, max_length=64, description="a participant id")]
Name = Annotated[PlainName, Field(max_length=MAX_NAME_CHARS)]


# --- bodies and answers ----------------------------------------------------------------------------------


class RoomCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: SafeStr = Field(
        min_length=1, max_length=200, description="the agent (id or name) whose coaching, playbook and models"
    )
    name: Name = Field("", description="shown on the participants' pages")
    metadata: JsonObject = Field(
        default_factory=dict,
        description="kept with the call (at most 16 KB as JSON; not `room`, `coaching` or `phone_legs`, "
        "which the room writes)",
    )

    @model_validator(mode="after")
    def _bounded(self) -> RoomCreate:
        if len(json.dumps(self.metadata)) > MAX_CALL_METADATA_BYTES:
            raise PydanticCustomError("metadata_size", "metadata is over 16 KB as JSON")
        taken = sorted(set(self.metadata) & set(RESERVED_METADATA))
        if taken:
            raise PydanticCustomError(
                "metadata_reserved", "metadata keys {keys} are the room's own", {"keys": ", ".join(taken)}
            )
        return self


class ParticipantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["customer", "rep", "coach"]
    mode: Mode | None = Field(None, description="default: listen for a coach, speak for the others")
    name: Name = ""


class ModeChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Mode


class ParticipantOut(BaseModel):
    id: str
    role: str
    mode: str
    name: str
    connected: bool = Field(description="false: invited, its token not used yet")


class HintOut(BaseModel):
    trigger: str
    text: str
    source: str
    latency_ms: float
    whisper: bool
    role: str = Field(description="whose words fired it")


class RoomOut(BaseModel):
    id: str
    call_id: str
    agent: str
    agent_id: str | None
    name: str
    created_at: datetime
    coaching: bool = Field(description="the AI coach is in the room (the agent's coaching.enabled)")
    participants: list[ParticipantOut]


class RoomDetail(RoomOut):
    metrics: dict[str, Any] = Field(description="the conversation metrics so far (docs/coaching.md)")
    hints: list[HintOut]


class Invitation(BaseModel):
    participant_id: str
    role: str
    mode: str
    name: str
    token: str = Field(description="single-use join token; give it to this participant only")
    expires_at: datetime
    ws_url: str = Field(description="the participant's WebSocket, token included")
    page_url: str | None = Field(description="the rep page, joined with this token (reps and coaches)")


def _out(room: CoachedRoom) -> RoomOut:
    return RoomOut(
        id=room.id,
        call_id=room.call.id,
        agent=room.agent.name,
        agent_id=room.call.agent_id,
        name=room.name,
        created_at=room.created_at,
        coaching=room.agent.coaching.enabled,
        participants=[ParticipantOut(**p) for p in room.participants()],
    )


def _detail(room: CoachedRoom) -> RoomDetail:
    return RoomDetail(
        **_out(room).model_dump(),
        metrics=room.metrics(),
        hints=[HintOut(**h) for h in room.hints()],
    )


# --- REST --------------------------------------------------------------------------------------------------


def get_rooms(request: Request) -> LiveRooms:
    rooms = getattr(request.app.state, "rooms", None)
    if rooms is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "coached rooms are not available here")
    assert isinstance(rooms, LiveRooms)
    return rooms


RoomsDep = Annotated[LiveRooms, Depends(get_rooms)]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such live room (or participant)"}}


def invite(room: CoachedRoom, role: str, mode: Mode | None, name: str) -> tuple[Participant, str]:
    """``room.add`` (a participant and its join token) with its refusals as HTTP errors: 409 for a room
    that is full or has ended, 422 for a participant it cannot take."""
    try:
        return room.add(Role(role), mode, name)
    except (RoomFull, RoomClosed) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except InvalidParticipant as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc


def _room(rooms: LiveRooms, org_id: str, room_id: str) -> CoachedRoom:
    try:
        return rooms.get(org_id, room_id)
    except RoomNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=RoomOut,
    responses={
        404: {"description": "no such agent"},
        429: {"description": "too many live rooms"},
        503: {"description": "shutting down, or the agent's models failed to load"},
    },
)
async def create_room(body: RoomCreate, principal: Auth, rooms: RoomsDep) -> RoomOut:
    """Open a coached call with an agent (its coaching settings, playbook and models): a call on the
    books from now on. Invite its participants next."""
    try:
        room = await rooms.create(principal.org_id, body.agent, name=body.name, metadata=body.metadata)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except TooManyRooms as exc:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc)) from exc
    except RoomUnavailable as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from exc
    return _out(room)


@router.get("", response_model=Page[RoomOut])
async def list_rooms(principal: Auth, rooms: RoomsDep) -> Page[RoomOut]:
    """The organization's live rooms on this server, oldest first (ended rooms are calls: /v1/calls)."""
    return Page[RoomOut](data=[_out(room) for room in rooms.list(principal.org_id)], next_cursor=None)


@router.get("/{room_id}", response_model=RoomDetail, responses=_NOT_FOUND)
async def get_room(room_id: RoomId, principal: Auth, rooms: RoomsDep) -> RoomDetail:
    """Who is in (and how they are heard), the conversation metrics and the hints so far."""
    return _detail(_room(rooms, principal.org_id, room_id))


@router.post(
    "/{room_id}/participants",
    status_code=status.HTTP_201_CREATED,
    response_model=Invitation,
    responses={**_NOT_FOUND, 409: {"description": "the room is full or has ended"}},
)
async def add_participant(
    room_id: RoomId, body: ParticipantCreate, request: Request, principal: Auth, rooms: RoomsDep
) -> Invitation:
    """Invite a customer, a rep or a coach (a supervisor is a coach): a join token for its socket, and
    for reps and coaches the rep page's address."""
    room = _room(rooms, principal.org_id, room_id)
    participant, token = invite(room, body.role, body.mode, body.name)
    scheme = "wss" if request.url.scheme == "https" else "ws"
    query = f"token={quote(token)}"
    page = None
    if participant.role is not Role.CUSTOMER:
        page = f"/voice/rep.html?room={quote(room.id)}&{query}"
    return Invitation(
        participant_id=participant.id,
        role=str(participant.role),
        mode=str(participant.mode),
        name=participant.name,
        token=token,
        expires_at=datetime.now(UTC) + timedelta(seconds=room.token_ttl_s),
        ws_url=f"{scheme}://{request.url.netloc}/v1/rooms/{quote(room.id)}/ws?{query}",
        page_url=page,
    )


@router.patch("/{room_id}/participants/{participant_id}", response_model=ParticipantOut, responses=_NOT_FOUND)
async def change_mode(
    room_id: RoomId, participant_id: ParticipantId, body: ModeChange, principal: Auth, rooms: RoomsDep
) -> ParticipantOut:
    """Switch how a participant is heard, live: ``listen`` (by nobody), ``whisper`` (by the rep only),
    ``barge`` (by everyone), ``speak``."""
    room = _room(rooms, principal.org_id, room_id)
    try:
        return ParticipantOut(**room.set_mode(participant_id, body.mode))
    except UnknownParticipant as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.delete(
    "/{room_id}/participants/{participant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=_NOT_FOUND,
)
async def remove_participant(
    room_id: RoomId, participant_id: ParticipantId, principal: Auth, rooms: RoomsDep
) -> None:
    """Take a participant out of the call (its socket is closed) or withdraw an invitation."""
    room = _room(rooms, principal.org_id, room_id)
    try:
        await room.remove(participant_id)
    except UnknownParticipant as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post("/{room_id}/end", response_model=RoomOut, responses=_NOT_FOUND)
async def end_room(room_id: RoomId, principal: Auth, rooms: RoomsDep) -> RoomOut:
    """End the call for everyone; its recording, transcript, hints and summary stay with the call
    (``GET /v1/calls/{call_id}``)."""
    room = _room(rooms, principal.org_id, room_id)
    await room.end("ended")
    return _out(room)


# --- a participant's socket --------------------------------------------------------------------------------


class _Start(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["start"]
    sample_rate: int = 16000


class _Ping(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["ping"]
    id: int | Annotated[str, Field(max_length=100)] | None = None


class _Leave(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    type: Literal["leave"]


_LegMessage = Annotated[_Start | _Ping | _Leave, Field(discriminator="type")]
_leg_messages: TypeAdapter[_LegMessage] = TypeAdapter(_LegMessage)
LEG_TYPES = ("start", "ping", "leave")


def parse_leg_message(text: str) -> _Start | _Ping | _Leave:
    """One JSON text message of a participant's socket, or ``ProtocolError`` saying what is wrong."""
    try:
        raw = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}"[:200]) from None
    if not isinstance(raw, dict):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "a control message must be a JSON object with a 'type'"
        )
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in LEG_TYPES:
        shown = repr(kind)[:40]
        raise ProtocolError(
            ErrorCode.UNKNOWN_MESSAGE,
            f"unknown message type {shown}; expected one of {', '.join(LEG_TYPES)} "
            "(audio goes in binary frames)",
        )
    try:
        return _leg_messages.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or kind}: {e['msg']}" for e in exc.errors()
        )
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"invalid '{kind}' message: {problems}") from None


class _SocketSink:
    """A participant's ear: the room's mix for it, as binary frames on its socket."""

    def __init__(self, connection: WsConnection, sample_rate: int) -> None:
        self.connection = connection
        self.sample_rate = sample_rate
        self._seq = 0

    async def write(self, frame: AudioFrame) -> None:
        self._seq += 1
        await self.connection.send_audio(self._seq, frame)

    async def clear(self) -> None:
        return None


class Joinable(Protocol):
    """What a participant's socket needs of the call it joins with a single-use token: a coached room
    (``platform/coached_room.py``) or the supervisors' room beside a live AI call
    (``platform/supervision.py``)."""

    @property
    def id(self) -> str: ...

    def check_token(self, token: str) -> bool: ...

    def connect(
        self,
        token: str,
        sink: AudioOutput,
        channel: Callable[[dict[str, Any]], None],
        close: Callable[[str], None],
        *,
        hello: Mapping[str, Any] | None = None,
    ) -> Leg: ...

    async def remove(self, participant_id: str, reason: str = ...) -> None: ...


class LegSocket:
    """One participant's socket: validates and rate-limits what it sends, and feeds its audio to its leg."""

    def __init__(self, runtime: LiveRuntime, room: Joinable, token: str, connection: WsConnection) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.room = room
        self.connection = connection
        self.leg: Leg | None = None
        self.input = WsInput(runtime, connection)
        self._token = token
        self._leaving: asyncio.Task[None] | None = None

    # --- inbound ------------------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        arrival = now()
        if not self.input.heard(arrival):
            return
        leg = self.leg
        if leg is None:
            self.input.complain(
                ErrorCode.NOT_STARTED, "audio arrived before 'start'; send it and wait for 'ready'"
            )
            return
        frame = self.input.frame(data)
        if frame is None:
            return
        _seq, samples = frame
        if not self.input.in_real_time(samples, arrival):
            return
        if len(samples):
            leg.feed(AudioFrame(samples, self.input.sample_rate))

    async def on_text(self, text: str) -> None:
        if not self.input.text_heard(text):
            return
        try:
            message = parse_leg_message(text)
            if isinstance(message, _Start):
                self._start(message)
            elif isinstance(message, _Ping):
                self.connection.send_message(
                    server_message("pong", id=message.id, server_time_ms=now() * 1000)
                )
            else:
                await self._leave("left")
        except ProtocolError as exc:
            self.input.error(exc.code, exc.message, **exc.detail)

    def _start(self, message: _Start) -> None:
        if self.leg is not None:
            raise ProtocolError(ErrorCode.ALREADY_STARTED, "this socket is already in the room")
        check_sample_rate("sample_rate", message.sample_rate)
        rate = message.sample_rate
        self.input.audio_at(rate)
        hello = {
            "audio": {"encoding": "pcm16", "sample_rate": rate, "max_frame_ms": self.settings.ws_max_frame_ms}
        }
        try:
            self.leg = self.room.connect(
                self._token,
                _SocketSink(self.connection, rate),
                self.connection.send_message,
                self._closed_by_room,
                hello=hello,
            )
        except JoinRefused as exc:
            self._refuse(ErrorCode.UNAUTHORIZED, str(exc), 1008)
        except RoomFull as exc:
            self._refuse(ErrorCode.CAPACITY, str(exc), 1013)
        except RoomClosed as exc:
            self._refuse(ErrorCode.UNAUTHORIZED, str(exc), 1008)

    def _refuse(self, code: ErrorCode, message: str, close: int) -> None:
        self.input.error(code, message, fatal=True)
        self.connection.close(close, str(code))

    def start_timed_out(self) -> None:
        if self.leg is None and not self.connection.closing:
            self._refuse(
                ErrorCode.NOT_STARTED,
                f"no 'start' within {self.settings.session_start_timeout_s:g} s; this socket closes",
                1008,
            )

    def _closed_by_room(self, reason: str) -> None:
        """The room let this participant go (removed, room ended, its socket failed): close after what is
        queued (the ``ended`` message)."""
        self.connection.close(1000, reason[:120])

    async def _leave(self, reason: str) -> None:
        leg = self.leg
        if leg is None:
            raise ProtocolError(ErrorCode.NOT_STARTED, "not in the room yet; send 'start' first")
        with contextlib.suppress(UnknownParticipant):
            await self.room.remove(leg.id, reason=reason)

    def on_stalled(self) -> None:
        """The client stopped reading: it leaves the room (the others must not wait on it)."""
        self.runtime.metrics.slow_client_closes.labels(transport="rooms").inc()
        if self.leg is not None and self._leaving is None:
            self._leaving = asyncio.ensure_future(self._leave("not_reading"))

    async def gone(self) -> None:
        """The socket is gone: its participant leaves, if it had not already."""
        if self._leaving is not None:
            await asyncio.gather(self._leaving, return_exceptions=True)
        if self.leg is not None and self.leg.active:
            with contextlib.suppress(UnknownParticipant):
                await self.room.remove(self.leg.id, reason="disconnected")


@router.websocket("/{room_id}/ws")
async def room_socket(
    websocket: WebSocket,
    room_id: Annotated[str, Path(max_length=64)],
    token: Annotated[str, Query(max_length=200)] = "",
) -> None:
    """A participant's audio and messages (no API key: the join token is the right to join)."""
    rooms: LiveRooms | None = getattr(websocket.app.state, "rooms", None)
    await serve_leg_socket(websocket, lambda: rooms.find(room_id) if rooms is not None else None, token)


async def serve_leg_socket(websocket: WebSocket, find: Callable[[], Joinable | None], token: str) -> None:
    """A participant's socket on any call it joins with a single-use token (``find`` names the call, or
    None when it is not live here): the same checks, frames and messages for every kind of call."""
    runtime: LiveRuntime = websocket.app.state.runtime
    address = await admit_client(websocket, runtime)
    if address is None:
        return
    try:
        await _serve_leg(runtime, websocket, find, token)
    finally:
        runtime.caps.give_connection(address)


async def _serve_leg(
    runtime: LiveRuntime, websocket: WebSocket, find: Callable[[], Joinable | None], token: str
) -> None:
    async with accepted(websocket, runtime) as connection:
        room = find()
        if room is None or not room.check_token(token):
            runtime.metrics.protocol_error(str(ErrorCode.UNAUTHORIZED))
            connection.send_message(
                error_message(
                    ErrorCode.UNAUTHORIZED,
                    "this room token is unknown, used or expired, or the room has ended; ask for a new one",
                    fatal=True,
                )
            )
            connection.close(1008, "invalid room token")
            return
        handler = LegSocket(runtime, room, token, connection)
        connection.on_stalled = handler.on_stalled
        loop = asyncio.get_running_loop()
        timer = loop.call_later(runtime.settings.session_start_timeout_s, handler.start_timed_out)
        try:
            await relay(websocket, handler.on_bytes, handler.on_text)  # or the socket broke: gone too
        except Exception:  # a bug: this participant's connection ends, the room and the server go on
            log.exception("rooms.connection_failed", room_id=room.id)
            connection.fail()
        finally:
            timer.cancel()
            await handler.gone()


# --- the process's rooms -----------------------------------------------------------------------------------


def with_rooms(settings: Settings) -> Callable[[FastAPI], contextlib.AbstractAsyncContextManager[None]]:
    """A lifespan that opens this process's ``LiveRooms`` (after ``with_platform``): rooms drain with live
    sessions at shutdown and the rest are ended before the store closes."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime: LiveRuntime = app.state.runtime
        platform = app.state.platform
        key_secret = "api_key_secret"

        async def stack_for(agent: AgentConfig, org_id: str) -> EngineStack:
            # The coach uses the agent's recogniser, model and voice, never its tools: only the model's
            # key (an organization secret it names) is needed.
            name = agent.llm.options.get(key_secret)
            found = await platform.secrets.resolve(org_id, [name]) if isinstance(name, str) and name else {}
            return await runtime.engines.stack_for(agent, found)

        rooms = LiveRooms(
            platform,
            stack_for,
            max_rooms=settings.max_rooms,
            max_per_org=settings.max_rooms_per_org,
            idle_s=settings.room_idle_timeout_s,
            max_duration_s=settings.max_session_duration_s,
            catalog=runtime.engines.catalog.get,
            observe=runtime.metrics.observe,
        )
        app.state.rooms = rooms
        runtime.drain_hooks.append(rooms.drain)
        try:
            yield
        finally:
            runtime.drain_hooks.remove(rooms.drain)
            await rooms.close()
            app.state.rooms = None

    return lifespan
