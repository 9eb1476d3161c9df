"""``/v1/calls/{call_id}/supervisors``: people joining a live AI call to listen, whisper or barge.

The REST routes authenticate with an API key and see only the key's organization's calls; the call must
be live on this server (a call on another node, or over, is a 409; so is a coached room's call, whose
supervisors join through ``/v1/rooms``). A supervisor's socket (``…/supervisors/ws?token=…``) needs no
key: it is a room participant's socket (``server/rooms.py``, the same frames, messages and single-use
token), and the token ``POST …/supervisors`` returned is its right to join. The room beside the call
and what whisper and barge do to the agent: ``platform/supervision.py``, docs/coaching.md.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Path, Query, Request, WebSocket, status
from pydantic import BaseModel, ConfigDict, Field

from parley.engine.state import SessionState
from parley.inputs import PlainName, SafeStr
from parley.platform.supervision import (
    MAX_WHISPER_CHARS,
    NotJoined,
    SupervisedCall,
    SupervisionUnavailable,
)
from parley.rooms import InvalidParticipant, Mode, Participant, RoomClosed, RoomFull, UnknownParticipant
from parley.rooms.model import MAX_NAME_CHARS
from parley.server.auth import Auth, PlatformDep
from parley.server.live import LiveSession
from parley.server.rooms import Joinable, serve_leg_socket
from parley.server.routes.params import Ref
from parley.server.runtime import LiveRuntime
from parley.store.calls import CallRepository

router = APIRouter(prefix="/v1/calls", tags=["supervision"])

SupervisorId = Annotated[SafeStr, Path(min_length=1, max_length=64, description="a supervisor's id (`s_…`)")]
SupervisorMode = Literal["listen", "whisper", "barge"]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such call (or supervisor)"},
    409: {"description": "the call is not live on this server, or is a coached room's"},
}


class SupervisorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: SupervisorMode = Field("listen", description="how the supervisor comes in")
    name: Annotated[PlainName, Field(max_length=MAX_NAME_CHARS)] = Field(
        "", description="shown to supervisors"
    )


class SupervisorModeChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: SupervisorMode


class WhisperIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: SafeStr = Field(min_length=1, max_length=MAX_WHISPER_CHARS, description="guidance for the agent")


class SupervisorOut(BaseModel):
    id: str
    mode: str
    name: str
    connected: bool = Field(description="false: invited, its token not used yet")


class SupervisorList(BaseModel):
    call_id: str
    handed_over: bool = Field(description="a supervisor barges: the agent listens and answers nobody")
    supervisors: list[SupervisorOut]


class SupervisorInvitation(BaseModel):
    participant_id: str
    call_id: str
    mode: str
    name: str
    token: str = Field(description="single-use join token; give it to this supervisor only")
    expires_at: datetime
    ws_url: str = Field(description="the supervisor's WebSocket (a room participant's), token included")


def _out(view: dict[str, Any]) -> SupervisorOut:
    return SupervisorOut(id=view["id"], mode=view["mode"], name=view["name"], connected=view["connected"])


def live_session_of(runtime: LiveRuntime, call_id: str) -> LiveSession | None:
    """The live session of a call on this node (any organization's: callers check whose it is)."""
    for live in runtime.registry.sessions():
        if live.call is not None and live.call.call_id == call_id:
            return live
    return None


async def _live(request: Request, platform: PlatformDep, org_id: str, call_id: str) -> LiveSession:
    """The organization's call, live here; else 404 (not its call) or 409 (saying why it cannot be)."""
    runtime: LiveRuntime = request.app.state.runtime
    live = live_session_of(runtime, call_id)
    if live is not None and live.call is not None and live.call.call.org_id == org_id:
        if live.closed or live.engine.state is SessionState.ENDED:
            raise HTTPException(status.HTTP_409_CONFLICT, f"call {call_id} has ended")
        return live
    async with platform.db.session() as session:
        call = await CallRepository(session).get(call_id, org_id)
    if call is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no call {call_id!r}")
    if call.transport == "room":
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"call {call_id} is a coached room: its supervisors join through "
            "POST /v1/rooms/{room_id}/participants",
        )
    raise HTTPException(
        status.HTTP_409_CONFLICT, f"call {call_id} is not live on this server (its status: {call.status})"
    )


async def _supervision(runtime: LiveRuntime, live: LiveSession, *, create: bool) -> SupervisedCall | None:
    """The call's supervisors' room; with ``create``, opened if there is none (after one that is closing
    has closed)."""
    while True:
        current = live.tap.listener
        if isinstance(current, SupervisedCall) and current.ending:
            await current.wait_closed()
            continue
        if current is not None or not create:
            return current if isinstance(current, SupervisedCall) else None
        assert live.call is not None
        try:
            return SupervisedCall.open(
                live.engine,
                live.tap,
                live.timeline,
                call_id=live.call.call_id,
                record=live.call.timeline.emit,
                on_join=lambda who: runtime.metrics.supervisor_joins.labels(mode=str(who.mode)).inc(),
            )
        except SupervisionUnavailable as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


async def _supervised(request: Request, platform: PlatformDep, org_id: str, call_id: str) -> SupervisedCall:
    live = await _live(request, platform, org_id, call_id)
    supervision = await _supervision(request.app.state.runtime, live, create=False)
    if supervision is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"call {call_id} has no supervisors")
    return supervision


def _invitation(
    request: Request, call_id: str, participant: Participant, token: str, ttl_s: float
) -> SupervisorInvitation:
    scheme = "wss" if request.url.scheme == "https" else "ws"
    return SupervisorInvitation(
        participant_id=participant.id,
        call_id=call_id,
        mode=str(participant.mode),
        name=participant.name,
        token=token,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
        ws_url=f"{scheme}://{request.url.netloc}/v1/calls/{quote(call_id, safe='')}/supervisors/ws"
        f"?token={quote(token)}",
    )


@router.post(
    "/{call_id}/supervisors",
    status_code=status.HTTP_201_CREATED,
    response_model=SupervisorInvitation,
    responses={**_NOT_FOUND, 409: {"description": "not live here, a room's call, or 4 supervisors already"}},
)
async def add_supervisor(
    call_id: Ref,
    request: Request,
    principal: Auth,
    platform: PlatformDep,
    body: SupervisorCreate | None = None,
) -> SupervisorInvitation:
    """Invite a supervisor onto a live AI call (in ``listen`` by default): a single-use join token for
    its WebSocket, good for ten minutes."""
    body = body or SupervisorCreate()
    live = await _live(request, platform, principal.org_id, call_id)
    supervision = await _supervision(request.app.state.runtime, live, create=True)
    assert supervision is not None
    try:
        participant, token = supervision.invite(Mode(body.mode), body.name)
    except (RoomFull, RoomClosed, InvalidParticipant) as exc:
        if not supervision.supervisors():  # opened for this request alone: nobody to keep it for
            await supervision.close("no_supervisors")
        invalid = isinstance(exc, InvalidParticipant)
        code = status.HTTP_422_UNPROCESSABLE_CONTENT if invalid else status.HTTP_409_CONFLICT
        raise HTTPException(code, str(exc)) from exc
    return _invitation(request, call_id, participant, token, supervision.token_ttl_s)


@router.get("/{call_id}/supervisors", response_model=SupervisorList, responses=_NOT_FOUND)
async def list_supervisors(
    call_id: Ref, request: Request, principal: Auth, platform: PlatformDep
) -> SupervisorList:
    """Who supervises the call (invited or connected) and how: listen, whisper or barge."""
    live = await _live(request, platform, principal.org_id, call_id)
    supervision = await _supervision(request.app.state.runtime, live, create=False)
    supervisors = supervision.supervisors() if supervision is not None else []
    return SupervisorList(
        call_id=call_id, handed_over=live.engine.handed_over, supervisors=[_out(s) for s in supervisors]
    )


@router.patch("/{call_id}/supervisors/{participant_id}", response_model=SupervisorOut, responses=_NOT_FOUND)
async def change_supervisor_mode(
    call_id: Ref,
    participant_id: SupervisorId,
    body: SupervisorModeChange,
    request: Request,
    principal: Auth,
    platform: PlatformDep,
) -> SupervisorOut:
    """Switch a supervisor live: ``listen`` (heard by nobody), ``whisper`` (what they say reaches the
    agent as guidance, never the caller), ``barge`` (they take the call over; the agent listens)."""
    supervision = await _supervised(request, platform, principal.org_id, call_id)
    try:
        return _out(supervision.set_mode(participant_id, Mode(body.mode)))
    except UnknownParticipant as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.delete(
    "/{call_id}/supervisors/{participant_id}", status_code=status.HTTP_204_NO_CONTENT, responses=_NOT_FOUND
)
async def remove_supervisor(
    call_id: Ref, participant_id: SupervisorId, request: Request, principal: Auth, platform: PlatformDep
) -> None:
    """A supervisor leaves (its socket is closed), or its invitation is withdrawn."""
    supervision = await _supervised(request, platform, principal.org_id, call_id)
    try:
        await supervision.remove(participant_id)
    except UnknownParticipant as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


@router.post(
    "/{call_id}/supervisors/{participant_id}/whisper",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **_NOT_FOUND,
        409: {"description": "not live here, a room's call, or the supervisor has not joined yet"},
    },
)
async def whisper(
    call_id: Ref,
    participant_id: SupervisorId,
    body: WhisperIn,
    request: Request,
    principal: Auth,
    platform: PlatformDep,
) -> None:
    """Typed guidance: the agent gets it as a note from its next reply on; the caller hears nothing. Only
    a supervisor who joined (its socket connected) may whisper: 409 before."""
    supervision = await _supervised(request, platform, principal.org_id, call_id)
    try:
        supervision.whisper(participant_id, body.text)
    except UnknownParticipant as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except (RoomClosed, NotJoined) as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc


@router.websocket("/{call_id}/supervisors/ws")
async def supervisor_socket(
    websocket: WebSocket,
    call_id: Annotated[str, Path(max_length=200)],
    token: Annotated[str, Query(max_length=200)] = "",
) -> None:
    """A supervisor's audio and messages (no API key: the join token is the right to join)."""
    runtime: LiveRuntime = websocket.app.state.runtime

    def find() -> Joinable | None:
        live = live_session_of(runtime, call_id)
        listener = live.tap.listener if live is not None else None
        return listener if isinstance(listener, SupervisedCall) else None

    await serve_leg_socket(websocket, find, token)
