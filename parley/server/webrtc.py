"""``POST /v1/sessions/webrtc``: a live session over WebRTC (protocol in docs/protocol.md).

The offer opens the session (admission errors are HTTP errors, before any media flows), once it has been
checked and answered: an offer refused for its SDP starts no session, so it spends no token and puts no
call on the books. The answer carries all of the server's candidates (no trickle). Microphone audio
arrives on the client's Opus track and agent audio leaves on ours; control messages are the WebSocket
protocol's JSON on the data channel the client opened. There is no resume: a new offer starts a new
session, and a peer connection that fails or closes ends its session.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import structlog
from aiortc import RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import SessionDescription
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field

from parley.engine.events import now
from parley.server.guard import origin_allowed
from parley.server.live import LiveSession
from parley.server.registry import AdmissionError
from parley.server.runtime import Client, LiveRuntime
from parley.transports.uplink import TokenBucket
from parley.transports.webrtc import (
    OPUS_RATE,
    MalformedOffer,
    PacedAudioTrack,
    RtcPeer,
    offer_problem,
    peer_connection,
    pump_inbound,
    restrict_ice_to,
    without_mdns_candidates,
    without_receive_buffering,
)
from parley.transports.ws_protocol import (
    PROTOCOL_VERSION,
    End,
    ErrorCode,
    Interrupt,
    Ping,
    ProtocolError,
    Text,
    error_message,
    parse_client_message,
    server_message,
)

OFFER_PATH = "/v1/sessions/webrtc"
INPUT_RATE = 16000
"""The session's input rate: what the recogniser wants; the Opus track is resampled to it."""
ICE_ADDRESSES = ("127.0.0.1",)
"""Host candidates are gathered here only (loopback: same-machine clients and tests)."""

log = structlog.get_logger("parley.server.webrtc")

_STATUS = {
    ErrorCode.UNKNOWN_AGENT: 404,
    ErrorCode.CAPACITY: 503,
    ErrorCode.SHUTTING_DOWN: 503,
    ErrorCode.NOT_READY: 503,
    ErrorCode.REALTIME_DISABLED: 403,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.RATE_LIMITED: 429,
}


class Offer(BaseModel):
    sdp: str = Field(max_length=20_000)
    type: Literal["offer"]
    agent: str | None = Field(None, max_length=200)
    token: str | None = Field(None, max_length=200, description="session token (agents that are not public)")


class RtcControl:
    """Turns data channel messages into calls on the session, as the WebSocket handler does."""

    def __init__(self, runtime: LiveRuntime, live: LiveSession, peer: RtcPeer) -> None:
        self.runtime = runtime
        self.live = live
        self.peer = peer
        rate = runtime.settings.ws_max_messages_per_s
        self._messages = TokenBucket(rate, 2 * rate)

    def started(self) -> None:
        """The data channel is open: the client gets, in order, what the session said before (the first
        ``state``), then ``session.started``."""
        live, settings = self.live, self.runtime.settings
        live.send(
            server_message(
                "session.started",
                session_id=live.id,
                token=live.token,
                agent=live.agent.name,
                agent_id=None if live.call is None else live.call.call.agent_id,
                agent_version=None if live.call is None else live.call.call.agent_version,
                protocol=PROTOCOL_VERSION,
                transport="webrtc",
                audio_in={"encoding": "opus", "sample_rate": OPUS_RATE},
                audio_out={"encoding": "opus", "sample_rate": OPUS_RATE, "frame_ms": settings.audio_frame_ms},
                idle_timeout_s=settings.session_idle_timeout_s,
                max_duration_s=settings.max_session_duration_s,
            )
        )
        live.attach(self.peer, last_message_seq=-1)

    def on_message(self, data: str | bytes) -> None:
        """Never raises: aiortc calls this from its receive loop, which an exception would end, leaving
        the channel open but deaf."""
        try:
            if not self._messages.take():
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many control messages; this one was dropped")
            if not isinstance(data, str):
                raise ProtocolError(
                    ErrorCode.UNKNOWN_MESSAGE, "audio goes on the media track, not the data channel"
                )
            if len(data) > self.runtime.settings.ws_max_message_bytes:
                raise ProtocolError(ErrorCode.MESSAGE_TOO_LARGE, f"control message of {len(data)} bytes")
            self._dispatch(parse_client_message(data))
        except ProtocolError as exc:
            self.runtime.metrics.protocol_error(str(exc.code))
            self.peer.send_message(error_message(exc.code, exc.message, **exc.detail))
        except Exception:  # a bug: this peer ends (and with it its session), the server lives on
            log.exception("webrtc.message_failed", session_id=self.live.id)
            self.runtime.metrics.protocol_error(str(ErrorCode.INTERNAL))
            self.peer.send_message(
                error_message(ErrorCode.INTERNAL, "internal server error; this connection closes", fatal=True)
            )
            self.peer.close(1011, "internal error")

    def _dispatch(self, message: Any) -> None:
        live = self.live
        if isinstance(message, Ping):
            self.peer.send_message(
                server_message(
                    "pong",
                    id=message.id,
                    server_time_ms=now() * 1000,
                    state=str(live.engine.state),
                    idle=live.engine.idle,
                )
            )
            return
        if isinstance(message, Text | Interrupt | End):
            live.touch()
            if isinstance(message, Text):
                live.engine.send_text(message.text)
            elif isinstance(message, Interrupt):
                live.engine.interrupt()
            else:
                live.end("client_ended")
            return
        raise ProtocolError(
            ErrorCode.ALREADY_STARTED,
            f"the offer started session {live.id}; '{message.type}' is not used over WebRTC",
        )

    def gone(self) -> None:
        if self.live.connection is self.peer:
            self.live.end("client_closed")
        self.live.detach(self.peer)


def refusal(status: int, code: ErrorCode, message: str) -> JSONResponse:
    """Every refusal of the offer endpoint: the protocol's ``error`` message."""
    return JSONResponse(error_message(code, message, fatal=True), status_code=status)


def _unreadable(exc: RequestValidationError) -> JSONResponse:
    """A body that is not an ``Offer``: which field and why (never what was sent, as in ``errors.py``),
    in the endpoint's own shape."""
    problems: list[str] = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return refusal(
                400, ErrorCode.BAD_JSON, 'the body is not valid JSON; send {"sdp": "...", "type": "offer"}'
            )
        where = ".".join(str(part) for part in error.get("loc", ())[1:]) or "body"
        problems.append(f"{where}: {error.get('msg', 'invalid')}")
    return refusal(400, ErrorCode.INVALID_MESSAGE, f"invalid offer: {'; '.join(problems)}")


class _OfferRoute(APIRoute):
    """FastAPI answers a body it cannot read with the REST API's 422 ``detail`` list; this endpoint
    answers it like its other refusals, so its clients read one shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await handle(request)
            except RequestValidationError as exc:
                return _unreadable(exc)

        return handler


async def _discard(pc: RTCPeerConnection, track: PacedAudioTrack) -> None:
    track.stop()
    try:
        await pc.close()
    except Exception:  # aiortc tearing down a half-made connection; it is dropped either way
        log.exception("webrtc.close_failed")


async def _answer(pc: RTCPeerConnection, track: PacedAudioTrack, offer_sdp: str) -> RTCSessionDescription:
    """The answer to ``offer_sdp`` (candidates are gathered later, by ``setLocalDescription``). Every
    step that reads the client's SDP is here, so an offer aiortc refuses is refused before a session
    (and a call record, and a token) is spent on it."""
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "audio":
            pc.addTrack(track)
            break
    else:
        raise ValueError("the offer has no audio section")
    without_receive_buffering(pc)
    answer = await pc.createAnswer()
    SessionDescription.parse(answer.sdp)  # setLocalDescription parses it again: fail here, not there
    return answer


def webrtc_router(runtime: LiveRuntime) -> APIRouter:
    router = APIRouter(route_class=_OfferRoute)
    restrict_ice_to(ICE_ADDRESSES)

    def refuse_offer(address: str, problem: str, detail: str | None = None) -> JSONResponse:
        """Logged and counted, never a call record: an offer refused before its session has none, and
        so does not let one client write rows without limit."""
        log.info("webrtc.offer_refused", client=address, problem=problem, detail=detail)
        runtime.metrics.protocol_error("bad_offer")
        return refusal(400, ErrorCode.INVALID_MESSAGE, problem)

    @router.post(OFFER_PATH)
    async def sessions_webrtc(offer: Offer, request: Request) -> JSONResponse:
        if not origin_allowed(request.headers, runtime.settings.allowed_origins):
            runtime.metrics.protocol_error(str(ErrorCode.FORBIDDEN_ORIGIN))
            return refusal(403, ErrorCode.FORBIDDEN_ORIGIN, "this page's origin may not open sessions")
        address = request.client.host if request.client is not None else "unknown"
        offer_sdp = without_mdns_candidates(offer.sdp)
        try:
            problem = offer_problem(offer_sdp)
        except MalformedOffer as exc:
            return refuse_offer(address, "malformed SDP offer", str(exc))
        if problem is not None:
            return refuse_offer(address, problem)
        try:
            runtime.caps.take_connection(address)
        except AdmissionError as exc:
            return refusal(429, exc.code, exc.message)
        pc = peer_connection()
        track = PacedAudioTrack(OPUS_RATE, runtime.settings.audio_frame_ms)
        microphones: list[MediaStreamTrack] = []

        @pc.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            if remote.kind == "audio":
                microphones.append(remote)  # pumped once there is a session to feed

        live: LiveSession | None = None
        try:
            try:
                answer = await _answer(pc, track, offer_sdp)
            except Exception as exc:  # what aiortc refuses (codecs, ICE, DTLS): its words are logged only
                return refuse_offer(
                    address, "the server cannot answer this SDP offer", f"{type(exc).__name__}: {exc}"
                )
            try:
                live = await runtime.open_session(
                    offer.agent, INPUT_RATE, OPUS_RATE, client=Client(address, "webrtc"), token=offer.token
                )
            except AdmissionError as exc:
                return refusal(_STATUS.get(exc.code, 400), exc.code, exc.message)
        finally:
            if live is None:
                runtime.caps.give_connection(address)
                await _discard(pc, track)
        return await _connect(runtime, live, address, pc, track, microphones, answer)

    return router


async def _connect(
    runtime: LiveRuntime,
    live: LiveSession,
    address: str,
    pc: RTCPeerConnection,
    track: PacedAudioTrack,
    microphones: list[MediaStreamTrack],
    answer: RTCSessionDescription,
) -> JSONResponse:
    """Join the answered peer connection to its new session, and gather the answer's candidates."""
    # The peer's connection slot is given back once its session is over, however it ends.
    closed = asyncio.ensure_future(live.wait_closed())
    closed.add_done_callback(lambda _: runtime.caps.give_connection(address))
    settings = runtime.settings
    peer = RtcPeer(
        pc,
        track,
        max_pending=settings.outbound_max_messages,
        stall_s=settings.outbound_stall_s,
        on_dropped=runtime.metrics.outbound_dropped.inc,
        on_stalled=runtime.metrics.slow_client_closes.labels(transport="webrtc").inc,
    )
    peer.session_id = live.id
    control = RtcControl(runtime, live, peer)
    runtime.connections.add(peer)
    tasks: set[asyncio.Task[None]] = set()

    @pc.on("datachannel")
    def on_datachannel(channel: RTCDataChannel) -> None:
        peer.bind(channel)
        channel.on("message", control.on_message)
        channel.on("close", control.gone)
        if channel.readyState == "open":
            control.started()
        else:
            channel.on("open", control.started)

    # The client's track arrived with its offer (aiortc announces it in setRemoteDescription).
    for microphone in microphones:
        task = asyncio.create_task(pump_inbound(microphone, INPUT_RATE, live.feed))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("failed", "closed"):
            control.gone()
            for task in list(tasks):
                task.cancel()
            peer.close(1000, "gone")
            await peer.wait_closed()
            runtime.connections.discard(peer)

    try:
        await pc.setLocalDescription(answer)
    except Exception:  # gathering our own candidates failed: a server fault, not the client's offer
        log.exception("webrtc.answer_failed", session_id=live.id)
        live.end("internal_error")
        await peer.abandon()
        runtime.connections.discard(peer)
        return refusal(500, ErrorCode.INTERNAL, "internal server error; the offer was not answered")
    local = pc.localDescription
    return JSONResponse({"sdp": local.sdp, "type": local.type, "session_id": live.id})
