"""The outbound side of one WebSocket: messages and agent audio leave in order, without stalling the
engine on anything but the listener."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from fastapi import WebSocket

from parley.audio.frame import AudioFrame
from parley.transports.ws_protocol import dumps, encode_frame, server_message

_CLEAR = dumps(server_message("audio.clear"))


class WsConnection:
    """The outbound side of one socket: everything leaves in order, and sending never blocks the engine
    on anything but the listener.

    Control messages are queued and written by one task, so sending them never waits. Agent audio is
    written by the reply's play loop itself when nothing is queued ahead of it (one task switch less
    per frame, which counts at hundreds of sessions); it waits only while the client's network buffer
    is full, so the playout holds instead of piling up audio nobody hears. A dead client is found by
    the WebSocket keepalive; the send then fails and the wait ends.
    """

    def __init__(self, websocket: WebSocket, on_dropped: Any = None, max_audio_pending: int = 250) -> None:
        self.ws = websocket
        self.max_audio_pending = max_audio_pending
        self.dropped = 0
        self._on_dropped = on_dropped
        self._pending: deque[bytes | str] = deque()
        self._audio_pending = 0
        self._busy = False
        """A write is in flight, from either path."""
        self._wake = asyncio.Event()
        self._close: tuple[int, str] | None = None
        self._closed = asyncio.Event()
        self._sender = asyncio.create_task(self._send_loop())

    def send_message(self, message: dict[str, Any]) -> None:
        self.send_message_raw(dumps(message))

    def send_message_raw(self, text: str) -> None:
        if self._close is None:
            self._pending.append(text)
            self._wake.set()

    async def send_audio(self, seq: int, frame: AudioFrame) -> None:
        if self._close is not None:
            return
        data = encode_frame(seq, frame)
        if self._pending or self._busy:
            self._queue(data)
            return
        self._busy = True
        try:
            await self.ws.send_bytes(data)
        except Exception:  # gone mid-send: the receive side notices and detaches
            self._close = self._close or (1006, "gone")
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
        self._sender.cancel()

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def _queue(self, data: bytes) -> None:
        if self._audio_pending >= self.max_audio_pending:
            self._drop_oldest_audio()
        self._pending.append(data)
        self._audio_pending += 1
        self._wake.set()

    def _drop_oldest_audio(self) -> None:
        for index, item in enumerate(self._pending):
            if type(item) is bytes:
                del self._pending[index]
                self._audio_pending -= 1
                self.dropped += 1
                if self._on_dropped is not None:
                    self._on_dropped()
                return

    async def _send_loop(self) -> None:
        ws = self.ws
        try:
            while True:
                while self._pending and not self._busy:
                    item = self._pending.popleft()
                    self._busy = True
                    try:
                        if type(item) is bytes:
                            self._audio_pending -= 1
                            await ws.send_bytes(item)
                        else:
                            await ws.send_text(item)  # type: ignore[arg-type]
                    finally:
                        self._busy = False
                if self._close is not None and not self._pending and not self._busy:
                    break
                self._wake.clear()
                await self._wake.wait()
            code, reason = self._close
            if code != 1006:
                await ws.close(code, reason[:120])
        except Exception:  # the peer went away mid-send; the receive side notices and detaches
            pass
        finally:
            self._closed.set()
