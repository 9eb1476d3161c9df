"""The outbound side of one WebSocket: messages and agent audio leave in order, without stalling the
engine on anything but the listener."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketDisconnected

from parley.audio.frame import AudioFrame
from parley.engine.events import now
from parley.transports.ws_protocol import ErrorCode, dumps, encode_frame, error_message, server_message

log = structlog.get_logger("parley.server.ws")

_CLEAR = dumps(server_message("audio.clear"))
_INTERNAL = dumps(
    error_message(ErrorCode.INTERNAL, "internal server error; this connection closes", fatal=True)
)
GONE = (WebSocketDisconnect, WebSocketDisconnected)
"""What a write to a socket whose peer went away raises (Starlette turns the server's ``OSError`` into
``WebSocketDisconnect``; a write after the close raises ``WebSocketDisconnected``)."""
STALLED = (1008, "client is not reading")


class WsConnection:
    """The outbound side of one socket: everything leaves in order, and sending never blocks the engine
    on anything but the listener.

    Control messages are queued and written by one task, so sending them never waits. Agent audio is
    written by the reply's play loop itself when nothing is queued ahead of it (one task switch less
    per frame, which counts at hundreds of sessions); it waits only while the client's network buffer
    is full, so the playout holds instead of piling up audio nobody hears.

    Both queues are bounded, so a client that stops reading costs a fixed amount of memory: past
    ``max_audio_pending`` the oldest audio goes, past ``max_messages_pending`` new messages do. A
    client that lost a message, or whose write stayed blocked for ``stall_s``, is not reading: the
    connection is closed (``STALLED``) and ``on_stalled`` lets its session take the dropped-connection
    path at once, since the close frame itself only leaves once the client reads again.
    """

    def __init__(
        self,
        websocket: WebSocket,
        on_dropped: Callable[[], None] | None = None,
        max_audio_pending: int = 250,
        *,
        max_messages_pending: int = 256,
        stall_s: float = 5.0,
        on_stalled: Callable[[], None] | None = None,
    ) -> None:
        self.ws = websocket
        self.max_audio_pending = max_audio_pending
        self.max_messages_pending = max_messages_pending
        self.stall_s = stall_s
        self.on_stalled = on_stalled
        self.session_id: str | None = None
        """For the logs, once the connection carries a session."""
        self.dropped = 0
        self.peak_pending = 0
        """Most items ever queued at once (at most ``max_messages_pending + max_audio_pending``)."""
        self.stalled = False
        self._on_dropped = on_dropped
        self._pending: deque[bytes | str] = deque()
        self._audio_pending = 0
        self._messages_pending = 0
        self._lost_message = False
        self._busy = False
        """A write is in flight, from either path."""
        self._write_started = 0.0
        self._watch: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._sender = asyncio.create_task(self._send_loop())

    @property
    def closing(self) -> bool:
        return self._close is not None

    @property
    def queued_messages(self) -> int:
        return self._messages_pending

    @property
    def queued_audio(self) -> int:
        return self._audio_pending

    def send_message(self, message: dict[str, Any]) -> None:
        self.send_message_raw(dumps(message))

    def send_message_raw(self, text: str) -> None:
        if self._close is not None:
            return
        if self._messages_pending >= self.max_messages_pending:
            self._lost_message = True  # the client is far behind; it is closed at the next look
            self._count_drop()
            self._arm_watch()
            return
        self._pending.append(text)
        self._messages_pending += 1
        self._note_peak()
        self._wake.set()

    def fail(self) -> None:
        """After an unexpected error (logged by the caller): tell the client, then close with 1011."""
        if self._close is None:
            self._pending.append(_INTERNAL)
            self._messages_pending += 1
            self.close(1011, "internal error")

    async def send_audio(self, seq: int, frame: AudioFrame) -> None:
        if self._close is not None:
            return
        data = encode_frame(seq, frame)
        if self._pending or self._busy:
            self._queue(data)
            return
        self._writing()
        try:
            await self.ws.send_bytes(data)
        except GONE:  # gone mid-send: the receive side notices and detaches
            self._close = self._close or (1006, "gone")
        except Exception:
            log.exception("ws.audio_send_failed", session_id=self.session_id)
            self.fail()
        finally:
            self._busy = False
            if self._pending or self._close is not None:
                self._wake.set()

    def queue_audio(self, seq: int, frame: AudioFrame) -> None:
        if self._close is None:
            self._queue(encode_frame(seq, frame))

    def send_clear(self) -> None:
        """Audio still queued here is dropped too: it would only be flushed on arrival."""
        if self._audio_pending:
            self._pending = deque(item for item in self._pending if type(item) is str)
            self._audio_pending = 0
        self.send_message_raw(_CLEAR)

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close; further sends are ignored."""
        if self._close is None:
            self._close = (code, reason)
            self._wake.set()

    def abandon(self) -> None:
        """The peer is gone: stop without sending anything."""
        self._close = self._close or (1006, "gone")
        self._disarm_watch()
        self._sender.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _queue(self, data: bytes) -> None:
        if self._audio_pending >= self.max_audio_pending:
            self._drop_oldest_audio()
        self._pending.append(data)
        self._audio_pending += 1
        self._note_peak()
        self._wake.set()

    def _note_peak(self) -> None:
        if len(self._pending) > self.peak_pending:
            self.peak_pending = len(self._pending)

    def _count_drop(self) -> None:
        self.dropped += 1
        if self._on_dropped is not None:
            self._on_dropped()

    # --- a client that stopped reading ---------------------------------------------------------------

    def _writing(self) -> None:
        """A write starts; the watch looks at it within ``stall_s`` (one timer per connection)."""
        self._busy = True
        self._write_started = now()
        if self._watch is None:
            self._arm_watch()

    def _arm_watch(self, delay: float | None = None) -> None:
        if self._watch is None and not self.stalled and not self._closed.is_set():
            self._watch = asyncio.get_running_loop().call_later(
                self.stall_s if delay is None else delay, self._look
            )

    def _disarm_watch(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None

    def _look(self) -> None:
        self._watch = None
        if self.stalled or self._closed.is_set():
            return
        blocked_for = now() - self._write_started if self._busy else 0.0
        if self._lost_message or blocked_for >= self.stall_s:
            self._stall()
        elif self._busy:
            self._arm_watch(self.stall_s - blocked_for)
        elif self._pending:
            self._arm_watch()

    def _stall(self) -> None:
        log.warning(
            "ws.client_not_reading",
            session_id=self.session_id,
            queued_messages=self._messages_pending,
            queued_audio=self._audio_pending,
            lost_message=self._lost_message,
        )
        self.stalled = True
        self._pending.clear()
        self._messages_pending = self._audio_pending = 0
        self.close(*STALLED)  # the close frame follows the write in flight, if the client ever reads it
        if self.on_stalled is not None:
            self.on_stalled()

    def _drop_oldest_audio(self) -> None:
        for index, item in enumerate(self._pending):
            if type(item) is bytes:
                del self._pending[index]
                self._audio_pending -= 1
                self._count_drop()
                return

    async def _send_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                while self._pending and not self._busy:
                    item = self._pending.popleft()
                    self._writing()
                    try:
                        if type(item) is bytes:
                            self._audio_pending -= 1
                            await ws.send_bytes(item)
                        else:
                            self._messages_pending -= 1
                            await ws.send_text(item)  # type: ignore[arg-type]
                    finally:
                        self._busy = False
                if self._close is not None and not self._pending and not self._busy:
                    break
                self._wake.clear()
                await self._wake.wait()
            self._disarm_watch()
            code, reason = self._close
            if code != 1006:
                await ws.close(code, reason[:120])
        except GONE:  # the peer went away mid-send; the receive side notices and detaches
            self._close = self._close or (1006, "gone")
        except Exception:
            log.exception("ws.send_failed", session_id=self.session_id)
            await self._fail_now()
        finally:
            self._disarm_watch()
            self._closed.set()

    async def _fail_now(self) -> None:
        """The sender itself failed: one last try at telling the client, then close with 1011."""
        self._close = (1011, "internal error")
        self._pending.clear()
        try:
            await self.ws.send_text(_INTERNAL)
            await self.ws.close(1011, "internal error")
        except GONE:
            pass  # the peer is gone as well: nobody is left to tell
        except Exception:
            log.exception("ws.close_failed", session_id=self.session_id)
