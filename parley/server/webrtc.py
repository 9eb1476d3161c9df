"""``POST /v1/sessions/webrtc``: a live session over WebRTC (protocol in docs/protocol.md).

The offer opens the session (admission errors are HTTP errors, before any media flows); the answer
carries all of the server's candidates (no trickle). Microphone audio arrives on the client's Opus
track and agent audio leaves on ours; control messages are the WebSocket protocol's JSON on the data
channel the client opened. There is no resume: a new offer starts a new session, and a peer connection
that fails or closes ends its session.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiortc import RTCDataChannel, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from parley.engine.events import now
from parley.server.guard import origin_allowed
from parley.server.live import LiveSession
from parley.server.registry import AdmissionError
from parley.server.runtime import Client, LiveRuntime
from parley.transports.uplink import TokenBucket
from parley.transports.webrtc import (
    OPUS_RATE,
    PacedAudioTrack,
    RtcPeer,
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
    type: str = Field(pattern="^offer$")
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


def webrtc_router(runtime: LiveRuntime) -> APIRouter:
    router = APIRouter()
    restrict_ice_to(ICE_ADDRESSES)

    @router.post("/v1/sessions/webrtc")
    async def sessions_webrtc(offer: Offer, request: Request) -> JSONResponse:
        if not origin_allowed(request.headers, runtime.settings.allowed_origins):
            runtime.metrics.protocol_error(str(ErrorCode.FORBIDDEN_ORIGIN))
            return JSONResponse(
                error_message(
                    ErrorCode.FORBIDDEN_ORIGIN, "this page's origin may not open sessions", fatal=True
                ),
                status_code=403,
            )
        address = request.client.host if request.client is not None else "unknown"
        try:
            runtime.caps.take_connection(address)
        except AdmissionError as exc:
            return JSONResponse(error_message(exc.code, exc.message, fatal=True), status_code=429)
        try:
            live = await runtime.open_session(
                offer.agent, INPUT_RATE, OPUS_RATE, client=Client(address, "webrtc"), token=offer.token
            )
        except AdmissionError as exc:
            runtime.caps.give_connection(address)
            return JSONResponse(
                error_message(exc.code, exc.message, fatal=True), status_code=_STATUS.get(exc.code, 400)
            )
        # The peer's connection slot is given back once its session is over, however it ends.
        closed = asyncio.ensure_future(live.wait_closed())
        closed.add_done_callback(lambda _: runtime.caps.give_connection(address))
        pc = peer_connection()
        track = PacedAudioTrack(OPUS_RATE, runtime.settings.audio_frame_ms)
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

        @pc.on("track")
        def on_track(remote: MediaStreamTrack) -> None:
            if remote.kind == "audio":
                task = asyncio.create_task(pump_inbound(remote, INPUT_RATE, live.feed))
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
            await pc.setRemoteDescription(
                RTCSessionDescription(sdp=without_mdns_candidates(offer.sdp), type="offer")
            )
            for transceiver in pc.getTransceivers():
                if transceiver.kind == "audio":
                    pc.addTrack(track)
                    break
            else:
                raise ValueError("the offer has no audio section")
            without_receive_buffering(pc)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            live.end("bad_offer")
            await peer.abandon()
            runtime.connections.discard(peer)
            return JSONResponse(
                error_message(ErrorCode.INVALID_MESSAGE, f"cannot answer this offer: {exc}", fatal=True),
                status_code=400,
            )
        answer = pc.localDescription
        return JSONResponse({"sdp": answer.sdp, "type": answer.type, "session_id": live.id})

    return router
