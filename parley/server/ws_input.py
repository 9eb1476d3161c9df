"""What every client WebSocket of the server does around its own protocol: who may connect, the accepted
socket's writer and its end, and the limits on what the client sends with their rate-limited complaints.

Shared by a live session's socket (``ws.py``), a room participant's (``rooms.py``) and Twilio's Media
Streams (``twilio_stream.py``, ``room_phone.py``, which use ``accepted`` only), so that a limit or a
complaint reads the same on every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import WebSocket

from parley.audio.frame import PCM16
from parley.engine.events import now
from parley.server.guard import origin_allowed
from parley.server.registry import AdmissionError
from parley.server.runtime import LiveRuntime
from parley.server.ws_outbound import GONE, WsConnection
from parley.transports.uplink import TokenBucket
from parley.transports.ws_protocol import (
    SUPPORTED_SAMPLE_RATES,
    ErrorCode,
    FrameError,
    ProtocolError,
    decode_audio,
    error_message,
)

COMPLAINT_INTERVAL_S = 1.0
"""An error that repeats per frame or per message is counted every time but said at most this often."""


UVICORN_BAD_UTF8 = "Invalid UTF-8 sequence received from client."
"""What uvicorn logs, with a traceback, for a text frame that is not UTF-8 (guarded by a test)."""


class _BadUtf8IsNoFault(logging.Filter):
    """uvicorn decodes text frames itself and closes one that is not UTF-8 with 1007 (RFC 6455), before
    the app sees it; but it logs that as a server fault, with a traceback. A client sending bad bytes
    is worth one warning line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == UVICORN_BAD_UTF8 and record.exc_info:
            error = record.exc_info[1]
            record.msg = "a client sent a text frame that is not UTF-8 (%s); closed with 1007"
            record.args = (getattr(error, "reason", type(error).__name__),)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_bad_utf8_tracebacks() -> None:
    """Install ``_BadUtf8IsNoFault`` on uvicorn's error logger, once per process. uvicorn's own logging
    setup keeps a logger's filters, so this may run before or after it."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _BadUtf8IsNoFault) for f in logger.filters):
        logger.addFilter(_BadUtf8IsNoFault())


async def admit_client(websocket: WebSocket, runtime: LiveRuntime) -> str | None:
    """The client's address, counted against its cap, if it may connect; else None. Another site's
    page is refused before the upgrade completes (HTTP 403). Too many connections from one address
    is accepted and closed at once with 1013 and the limit as its reason: a bare 403 would read as
    an auth failure, not "try again later". The caller gives the connection back
    (``runtime.caps.give_connection``) when the socket is done."""
    if not origin_allowed(websocket.headers, runtime.settings.allowed_origins):
        runtime.metrics.protocol_error(str(ErrorCode.FORBIDDEN_ORIGIN))
        await websocket.close(code=1008, reason="origin not allowed")
        return None
    address = websocket.client.host if websocket.client is not None else "unknown"
    try:
        runtime.caps.take_connection(address)
    except AdmissionError as exc:
        runtime.metrics.protocol_error(str(exc.code))
        await websocket.accept()
        await websocket.close(code=1013, reason=exc.message[:120])
        return None
    return address


@contextlib.asynccontextmanager
async def accepted(websocket: WebSocket, runtime: LiveRuntime) -> AsyncIterator[WsConnection]:
    """Accept the upgrade and give the socket its ordered, bounded writer (known to the runtime, so a
    shutdown can close it). On the way out a close the server asked for leaves first, with what was
    queued before it (at most ``outbound_stall_s``: a client that does not read is not waited for)."""
    settings = runtime.settings
    await websocket.accept()
    connection = WsConnection(
        websocket,
        on_dropped=runtime.metrics.outbound_dropped.inc,
        max_messages_pending=settings.outbound_max_messages,
        stall_s=settings.outbound_stall_s,
    )
    runtime.connections.add(connection)
    try:
        yield connection
    finally:
        if connection.closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(connection.stall_s):
                    await connection.wait_closed()
        connection.abandon()
        await connection.wait_closed()
        runtime.connections.discard(connection)


async def relay(
    websocket: WebSocket, on_bytes: Callable[[bytes], None], on_text: Callable[[str], Awaitable[None]]
) -> int | None:
    """Hand the client's frames to a handler until it goes: its close code, or None if the socket broke
    (a dropped network). What the handler raises is a bug, and is the caller's to log."""
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                code: int | None = message.get("code")
                return code
            data = message.get("bytes")
            if data is not None:
                on_bytes(data)
            else:
                await on_text(message.get("text") or "")
            # Messages already buffered are received without a pause: a burst of pings would queue
            # all its pongs before the writer ran once, and a client reading every one was closed as
            # "not reading". Let the writer go between two messages.
            await asyncio.sleep(0)
    except GONE:
        return None


def check_sample_rate(name: str, rate: int) -> None:
    """A client's sample rate must be one the protocol carries, else ``ProtocolError``."""
    if rate not in SUPPORTED_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_SAMPLE_RATE,
            f"{name} {rate} Hz is not supported; use one of {', '.join(map(str, SUPPORTED_SAMPLE_RATES))}",
            supported=list(SUPPORTED_SAMPLE_RATES),
        )


class WsInput:
    """The limits on one socket's input, and the ``error`` messages it gets when it breaks them.

    Messages of any kind are limited to ``ws_max_messages_per_s`` (bursts of twice that), text to
    ``ws_max_message_bytes``, an audio frame to ``ws_max_frame_ms`` at the client's sample rate, and
    audio to real time (+25 %, bursts of ``ws_audio_burst_s``). Bad input is dropped and said, never
    fatal; what can repeat per frame is complained about at most once a second.
    """

    def __init__(self, runtime: LiveRuntime, connection: WsConnection) -> None:
        self.metrics = runtime.metrics
        self.settings = runtime.settings
        self.connection = connection
        rate = self.settings.ws_max_messages_per_s
        self._messages = TokenBucket(rate, 2 * rate)
        self._audio = TokenBucket(1.25, self.settings.ws_audio_burst_s)
        self.sample_rate = 0
        self.max_samples = 0
        """The most samples a frame may hold (0 until the client said its sample rate)."""
        self._complained: dict[ErrorCode, float] = {}

    def audio_at(self, sample_rate: int) -> None:
        """The client's audio is at ``sample_rate`` from now on (a fresh real-time allowance)."""
        self.sample_rate = sample_rate
        self.max_samples = sample_rate * self.settings.ws_max_frame_ms // 1000
        self._audio = TokenBucket(1.25, self.settings.ws_audio_burst_s)

    def heard(self, arrival: float | None = None) -> bool:
        """Whether a message is to be heard at all: not once the connection closes, not over the
        message rate (complained about)."""
        if self.connection.closing:
            return False  # nothing more is said on this connection, so nothing more is heard either
        if not self._messages.take(1.0, arrival):
            self.complain(
                ErrorCode.RATE_LIMITED,
                f"more than {self.settings.ws_max_messages_per_s:g} messages "
                "per second; messages are being dropped",
            )
            return False
        return True

    def text_heard(self, text: str) -> bool:
        """``heard``, and the text within the size limit (an ``error`` if not)."""
        if not self.heard():
            return False
        limit = self.settings.ws_max_message_bytes
        if len(text) > limit:
            self.error(
                ErrorCode.MESSAGE_TOO_LARGE, f"control messages may be at most {limit} bytes; got {len(text)}"
            )
            return False
        return True

    def frame(self, data: bytes) -> tuple[int, PCM16] | None:
        """A binary frame's sequence number and samples, or None (complained about) if it is not one
        or holds more than the frame limit."""
        if len(data) > 2 * self.max_samples + 64:
            self._too_large(f"{len(data)} bytes")
            return None
        try:
            seq, _, samples = decode_audio(data)
        except FrameError as exc:
            self.complain(ErrorCode.BAD_AUDIO_FRAME, str(exc))
            return None
        if len(samples) > self.max_samples:
            self._too_large(f"{len(samples)} samples")
            return None
        return seq, samples

    def in_real_time(self, samples: PCM16, arrival: float) -> bool:
        """Whether ``samples`` fit the real-time allowance (complained about if not: they are dropped)."""
        if self._audio.take(len(samples) / self.sample_rate, arrival):
            return True
        self.complain(
            ErrorCode.RATE_LIMITED, "audio is arriving faster than real time; frames are being dropped"
        )
        return False

    def error(self, code: ErrorCode, message: str, *, fatal: bool = False, **detail: object) -> None:
        """Counted and said."""
        self.metrics.protocol_error(str(code))
        self.connection.send_message(error_message(code, message, fatal=fatal, **detail))

    def complain(self, code: ErrorCode, message: str) -> None:
        """For errors that repeat per frame: counted every time, reported at most once a second."""
        self.metrics.protocol_error(str(code))
        t = now()
        if t - self._complained.get(code, -1e9) >= COMPLAINT_INTERVAL_S:
            self._complained[code] = t
            self.connection.send_message(error_message(code, message))

    def _too_large(self, got: str) -> None:
        self.complain(
            ErrorCode.FRAME_TOO_LARGE,
            f"audio frames may hold at most {self.settings.ws_max_frame_ms} ms "
            f"({self.max_samples} samples at {self.sample_rate} Hz); got {got}",
        )
