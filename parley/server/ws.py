"""``/v1/sessions/ws``: live sessions over one WebSocket (protocol in docs/protocol.md).

A connection validates and rate-limits what the client sends and turns it into calls on a
``LiveSession``; what the session sends goes out through ``WsConnection`` (``ws_outbound.py``). Bad
input becomes an ``error`` message; it never ends the server and, apart from refusals at start, never
ends the connection either. What does end a connection: a client that stops reading (closed with 1008,
see ``WsConnection``) and a server bug (logged, an ``internal`` error, 1011); its session then waits
for a reconnect, as after a dropped network.
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, WebSocket

from parley.engine.events import now
from parley.server.live import LiveSession
from parley.server.registry import AdmissionError
from parley.server.runtime import LOCAL_CLIENT, Client, LiveRuntime
from parley.server.ws_input import (
    WsInput,
    accepted,
    admit_client,
    check_sample_rate,
    quiet_bad_utf8_tracebacks,
    relay,
)
from parley.server.ws_outbound import WsConnection
from parley.transports.ws_protocol import (
    PROTOCOL_VERSION,
    End,
    ErrorCode,
    Interrupt,
    Ping,
    ProtocolError,
    Resume,
    Start,
    Text,
    parse_client_message,
    server_message,
)

log = structlog.get_logger("parley.server.ws")

_FATAL_CLOSE = {
    ErrorCode.CAPACITY: 1013,
    ErrorCode.SHUTTING_DOWN: 1013,
    ErrorCode.REALTIME_DISABLED: 1008,
    ErrorCode.NOT_READY: 1011,
}


class ConnectionHandler:
    """Turns one client's messages into calls on its live session."""

    def __init__(self, runtime: LiveRuntime, connection: WsConnection, client: Client = LOCAL_CLIENT) -> None:
        self.runtime = runtime
        self.client = client
        self.settings = runtime.settings
        self.connection = connection
        self.live: LiveSession | None = None
        self.input = WsInput(runtime, connection)

    # --- inbound ------------------------------------------------------------------------------------

    def on_bytes(self, data: bytes) -> None:
        arrival = now()
        if not self.input.heard(arrival):
            return
        live = self.live
        if live is None:
            self.input.complain(
                ErrorCode.NOT_STARTED,
                "audio arrived before the session started; send 'start' and wait for 'session.started' first",
            )
            return
        if live.connection is not self.connection:
            return  # the session moved to another connection; this one is closing
        frame = self.input.frame(data)
        if frame is None:
            return
        seq, samples = frame
        if seq and seq <= live.last_inbound_seq:
            return  # already heard before a reconnect
        if not self.input.in_real_time(samples, arrival):
            return
        if seq:
            live.last_inbound_seq = seq
        if len(samples):
            live.feed(samples, arrival)

    async def on_text(self, text: str) -> None:
        if not self.input.text_heard(text):
            return
        try:
            message = parse_client_message(text)
            await self._dispatch(message)
        except ProtocolError as exc:
            self.input.error(exc.code, exc.message, **exc.detail)

    def on_stalled(self) -> None:
        """The client stopped reading and its connection is being closed: the session waits for it to
        come back, as after a dropped network, instead of talking into a socket nobody reads."""
        self.runtime.metrics.slow_client_closes.labels(transport="websocket").inc()
        if self.live is not None:
            self.live.detach(self.connection)

    def on_disconnect(self, code: int | None) -> None:
        """A deliberate close (1000, 1001: hang-up, tab closed) ends the session; anything else may be
        the network, so the session waits for the client to come back."""
        if self.live is None:
            return
        if code in (1000, 1001) and self.live.connection is self.connection:
            self.live.end("client_closed")
        self.live.detach(self.connection)

    async def _dispatch(self, message: Any) -> None:
        if isinstance(message, Start):
            await self._start(message)
        elif isinstance(message, Resume):
            self._resume(message)
        elif isinstance(message, Ping):
            live = self.live
            self.connection.send_message(
                server_message(
                    "pong",
                    id=message.id,
                    server_time_ms=now() * 1000,
                    state=None if live is None else str(live.engine.state),
                    idle=None if live is None else live.engine.idle,
                )
            )
        else:
            live = self._require_live()
            live.touch()
            if isinstance(message, Text):
                live.engine.send_text(message.text)
            elif isinstance(message, Interrupt):
                live.engine.interrupt()
            elif isinstance(message, End):
                live.end("client_ended")

    def _require_live(self) -> LiveSession:
        if self.live is None:
            raise ProtocolError(ErrorCode.NOT_STARTED, "no session yet; send 'start' (or 'resume') first")
        if self.live.connection is not self.connection:
            raise ProtocolError(ErrorCode.REPLACED, "this session was resumed on another connection")
        return self.live

    async def _start(self, message: Start) -> None:
        if self.live is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_STARTED, f"this connection already carries session {self.live.id}"
            )
        input_rate = message.audio.sample_rate
        output_rate = message.output.sample_rate or self.settings.audio_sample_rate
        check_sample_rate("audio.sample_rate", input_rate)
        check_sample_rate("output.sample_rate", output_rate)
        try:
            live = await self.runtime.open_session(
                message.agent,
                input_rate,
                output_rate,
                client=self.client,
                token=message.token,
                call_session=message.call,
            )
        except AdmissionError as exc:
            close = _FATAL_CLOSE.get(exc.code)
            self.input.error(exc.code, exc.message, fatal=close is not None)
            if close is not None:
                self.connection.close(close, str(exc.code))
            return
        self._bind(live)
        live.attach(self.connection)
        settings = self.settings
        booked = live.call.call if live.call is not None else None
        live.send(
            server_message(
                "session.started",
                session_id=live.id,
                token=live.token,
                agent=live.agent.name,
                # on the books: the stored agent and the version this call is pinned to
                agent_id=None if booked is None else booked.agent_id,
                agent_version=None if booked is None else booked.agent_version,
                protocol=PROTOCOL_VERSION,
                audio_in={
                    "encoding": "pcm16",
                    "sample_rate": input_rate,
                    "max_frame_ms": settings.ws_max_frame_ms,
                },
                audio_out={
                    "encoding": "pcm16",
                    "sample_rate": output_rate,
                    "frame_ms": settings.audio_frame_ms,
                    "lead_ms": settings.audio_output_lead_ms,
                },
                reconnect_grace_s=settings.reconnect_grace_s,
                idle_timeout_s=settings.session_idle_timeout_s,
                max_duration_s=settings.max_session_duration_s,
            )
        )

    def _resume(self, message: Resume) -> None:
        if self.live is not None:
            raise ProtocolError(
                ErrorCode.ALREADY_STARTED, f"this connection already carries session {self.live.id}"
            )
        live = self.runtime.registry.find(message.session_id, message.token)
        if live is None or live.closed:
            raise ProtocolError(
                ErrorCode.RESUME_FAILED,
                "no live session with that id and token (it may "
                "have ended or its reconnect grace expired); start a new one",
            )
        self._bind(live)
        resumed = live.resumed()
        self.connection.send_message(
            server_message(
                "session.resumed",
                session_id=live.id,
                agent=live.agent.name,
                state=str(live.engine.state),
                history=live.history(),
                # the reply still to come (its messages and audio follow), and the turn it answers
                answering=None
                if resumed.reply_id is None
                else {"reply_id": resumed.reply_id, "text": resumed.answering},
                last_audio_seq=live.downlink.last_seq,
                last_inbound_seq=live.last_inbound_seq,
                audio_in={"encoding": "pcm16", "sample_rate": live.input_rate},
                audio_out={
                    "encoding": "pcm16",
                    "sample_rate": live.output_rate,
                    "frame_ms": self.settings.audio_frame_ms,
                    "lead_ms": self.settings.audio_output_lead_ms,
                },
            )
        )
        live.attach(self.connection, message.last_audio_seq, message.last_event_seq)

    def _bind(self, live: LiveSession) -> None:
        self.live = live
        self.connection.session_id = live.id
        self.input.audio_at(live.input_rate)


def ws_router(runtime: LiveRuntime) -> APIRouter:
    router = APIRouter()
    quiet_bad_utf8_tracebacks()

    @router.websocket("/v1/sessions/ws")
    async def sessions_ws(websocket: WebSocket) -> None:
        # Refused, nothing held: another site's page at the upgrade (HTTP 403), an address over its
        # connection cap just after it (close 1013, "try again later").
        address = await admit_client(websocket, runtime)
        if address is None:
            return
        try:
            await _serve_connection(runtime, websocket, Client(address, "websocket"))
        finally:
            runtime.caps.give_connection(address)

    return router


async def _serve_connection(runtime: LiveRuntime, websocket: WebSocket, client: Client) -> None:
    async with accepted(websocket, runtime) as connection:
        handler = ConnectionHandler(runtime, connection, client)
        connection.on_stalled = handler.on_stalled
        close_code: int | None = None  # a broken socket (None): a dropped network, handled as one
        try:
            close_code = await relay(websocket, handler.on_bytes, handler.on_text)
        except Exception:  # a bug: this connection ends (the session may be resumed), the server lives on
            log.exception("ws.connection_failed", session_id=connection.session_id)
            connection.fail()  # the error message and the 1011 close leave, unless the client is not reading
        finally:
            handler.on_disconnect(close_code)
