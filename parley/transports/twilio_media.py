"""One phone call's Twilio Media Stream on a live session: the caller's audio in, the agent's audio out.

Inbound, Twilio sends one 20 ms μ-law frame per ``media`` message over TCP, in bursts when the network
hiccups. Frames go through the jitter buffer every phone leg shares (``twilio_inbound.py``), which drops
duplicates, puts reordered frames back in order and conceals lost ones; each frame goes to the session
as soon as it is in order (the session stamps it on its own clock and resamples 8 kHz to what its
recogniser wants), so the buffer adds latency only around a gap.

Outbound, the leg is the session's downlink ``Peer``: the reply's play loop already paces frames in
real time with a small lead, so Twilio's own buffer stays short; each frame leaves as μ-law ``media``,
and a ``mark`` follows every ~100 ms of audio (and when the audio stops). Twilio echoes a mark once the
audio before it was played, so echoes tell when the caller really heard what: ``heard_until`` maps the
engine's barge-in cut to the caller's ear, and an agent-side hang-up waits for the last words to be
heard before the socket (and with ``<Connect>``, the call) closes. A ``clear`` makes Twilio drop what it
buffered and echo the marks still pending: those name audio never heard.

Nothing here knows FastAPI: the leg sends text through a callable and closes the socket through another.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import structlog

from parley.audio.codecs import ulaw_encode
from parley.audio.frame import PCM16, AudioFrame
from parley.engine.events import now
from parley.transports.twilio_inbound import MediaStreamInbound
from parley.transports.twilio_protocol import (
    FRAME_BYTES,
    FRAME_MS,
    ULAW_RATE,
    clear_message,
    mark_message,
    media_message,
)

log = structlog.get_logger("parley.transports.twilio_media")

HUNG_UP = "caller_hung_up"
FRAME_S = FRAME_MS / 1000
DTMF_TONE_S = 0.1
DTMF_GAP_S = 0.08
"""Each key sounds this long with this silence after it: within what exchanges and IVRs detect."""
_DTMF_LOW = {"123A": 697.0, "456B": 770.0, "789C": 852.0, "*0#D": 941.0}
_DTMF_HIGH = {"147*": 1209.0, "2580": 1336.0, "369#": 1477.0, "ABCD": 1633.0}
MARK_LOST_S = 5.0
"""A mark not echoed this long after its audio was due is taken as lost (a peer that does not echo):
it no longer bounds what ``heard_until`` may say."""


class PhoneSession(Protocol):
    """What the leg needs of the session it carries (``parley.server.live.LiveSession``)."""

    id: str

    def feed(self, samples: PCM16, arrival: float | None = None) -> None: ...

    def press_key(self, digit: str) -> None: ...

    def end(self, reason: str) -> None: ...


@dataclass(slots=True)
class _SentMark:
    name: str
    end: float
    """Play time (engine clock) at which the audio sent before this mark ends."""
    echoed_at: float | None = None
    """When Twilio echoed it as played."""
    cleared_at: float | None = None
    """When a ``clear`` was sent while it was pending: it names audio that was never all heard."""


@dataclass(frozen=True, slots=True)
class LegStats:
    frames_in: int
    frames_out: int
    marks_sent: int
    marks_heard: int
    marks_cleared: int
    clears: int
    bad_messages: int
    jitter_lost: int
    jitter_late: int
    jitter_duplicates: int


class TwilioMediaLeg(MediaStreamInbound):
    """A live session's connection to one Twilio Media Stream.

    The owner feeds it Twilio's text messages (``on_text``), calls ``hung_up`` when the socket closes,
    and ``aclose`` when it is done. As the session's ``Connection`` it gets agent audio (``send_audio``),
    flushes (``send_clear``) and, when the session ends, ``close``: the leg then waits up to
    ``drain_timeout_s`` for its last mark to echo before it closes the socket.
    """

    def __init__(
        self,
        session: PhoneSession,
        stream_sid: str,
        send: Callable[[str], None],
        close_socket: Callable[[int, str], None],
        *,
        call_id: str | None = None,
        call_sid: str | None = None,
        jitter_ms: int = 40,
        mark_every_ms: int = 100,
        drain_timeout_s: float = 3.0,
        started_at: float | None = None,
    ) -> None:
        """``started_at``: when Twilio's ``start`` arrived (monotonic), the origin of the stream's media
        clock; inbound frames are stamped when they were said, not when they were processed (frames
        that queued up while the session opened arrive in one burst)."""
        super().__init__(
            stream_sid,
            send,
            close_socket,
            jitter_ms=jitter_ms,
            log=log.bind(call_id=call_id, call_sid=call_sid, session_id=session.id, stream_sid=stream_sid),
            counters=("frames_out", "marks_sent", "marks_heard", "marks_cleared", "clears"),
        )
        self.session = session
        self.mark_every_s = mark_every_ms / 1000
        self.drain_timeout_s = drain_timeout_s
        self._started_at = started_at
        # outbound bookkeeping
        self._mark_names = (f"p{n}" for n in itertools.count(1))
        self._pending: OrderedDict[str, _SentMark] = OrderedDict()
        self._settled: deque[_SentMark] = deque(maxlen=64)
        """Marks recently echoed or cleared, for ``heard_until``."""
        self._unmarked_s = 0.0
        self._last_end: float | None = None
        self._sent_end = float("-inf")
        self._delay: float | None = None
        """Latest measured (echo time − play time of the audio end): how late the caller hears."""
        self._flush: asyncio.TimerHandle | None = None
        self._drained = asyncio.Event()
        self._drained.set()
        self._closer: asyncio.Task[None] | None = None
        self.closing = False
        """The session ended: the last words drain, then the socket closes."""
        self.hangup_reason = HUNG_UP
        """Why the session ends when the stream does (``transferred`` once the call was sent on)."""

    @property
    def stats(self) -> LegStats:
        return LegStats(**self._stats())

    # --- inbound -----------------------------------------------------------------------------------------

    def _on_digit(self, digit: str) -> None:
        try:
            self.session.press_key(digit)
        except ValueError as exc:
            self._bad("bad_digit", str(exc))

    def _frames_ready(self, arrival: float) -> None:
        if self.closing:
            return
        # In order, as soon as they are: the session stamps frames on its own clock, so holding them
        # for a steady playout would only add the buffer's depth to every turn.
        seq = self.jitter.next_seq
        for frame in self.jitter.pop_ready(self._wait_frames):
            self.session.feed(frame, self._said_by(seq, arrival))
            seq = None if seq is None else seq + 1

    def _said_by(self, seq: int | None, arrival: float) -> float:
        """When the caller finished saying a frame: the stream's clock (chunk n ends n × 20 ms after
        ``start``, as Twilio's media timestamps count), never later than it arrived."""
        if self._started_at is None or seq is None:
            return arrival
        return min(arrival, self._started_at + seq * FRAME_S)  # chunks count from 1

    # --- marks: what the caller really heard --------------------------------------------------------------

    def _on_mark(self, name: str) -> None:
        mark = self._pending.pop(name, None)
        if mark is None:
            return  # cleared already (Twilio echoes those too), or not ours
        mark.echoed_at = now()
        self._settled.append(mark)
        self._counts["marks_heard"] += 1
        self._delay = mark.echoed_at - mark.end
        if not self._pending:
            self._drained.set()

    def heard_until(self, cut: float) -> float:
        """The play time (engine clock) the caller had heard up to at ``cut``.

        ``cut`` less the latest measured delay, kept within what the marks prove: at least the audio end
        of every mark echoed by ``cut``, at most the audio end of any mark not yet heard by then (and of
        all audio sent)."""
        if self._sent_end == float("-inf"):
            return cut  # nothing went out on this line: it knows no better than the engine
        self._forget_lost_marks()
        floor = max(
            (m.end for m in self._settled if m.echoed_at is not None and m.echoed_at <= cut),
            default=float("-inf"),
        )
        unheard = [m.end for m in self._pending.values()]
        unheard.extend(
            m.end
            for m in self._settled
            if (m.echoed_at is not None and m.echoed_at > cut)
            or (m.cleared_at is not None and m.cleared_at >= cut)
        )
        ceiling = min(unheard, default=self._sent_end)
        ceiling = min(ceiling, self._sent_end)
        estimate = cut - (self._delay or 0.0)
        return max(floor, min(estimate, ceiling))

    def _forget_lost_marks(self) -> None:
        lost_before = now() - MARK_LOST_S
        while self._pending:
            name, mark = next(iter(self._pending.items()))
            if mark.end >= lost_before:
                break
            del self._pending[name]
            self._log.warning("twilio.mark_lost", mark=name)
        if not self._pending:
            self._drained.set()

    def _mark(self) -> None:
        """Follow the audio sent so far with a mark."""
        if self._unmarked_s <= 0 or self._last_end is None:
            return
        self._forget_lost_marks()  # a peer that never echoes must not make the pending list grow
        name = next(self._mark_names)
        self._pending[name] = _SentMark(name, self._last_end)
        self._unmarked_s = 0.0
        self._drained.clear()
        self._counts["marks_sent"] += 1
        self._send(mark_message(self.stream_sid, name))

    def _arm_flush(self) -> None:
        """When the audio stops (no frame follows the last one by the time it plays), mark its end."""
        if self._flush is None and self._last_end is not None:
            delay = self._last_end + FRAME_S - now()
            self._flush = asyncio.get_running_loop().call_later(max(0.0, delay), self._flush_due)

    def _flush_due(self) -> None:
        self._flush = None
        if self._last_end is None or self.gone:
            return
        if now() < self._last_end + FRAME_S:
            self._arm_flush()  # more audio came meanwhile
            return
        self._mark()

    # --- the session's Peer and Connection ---------------------------------------------------------------

    async def send_audio(self, seq: int, frame: AudioFrame) -> None:
        self.queue_audio(seq, frame)

    def queue_audio(self, seq: int, frame: AudioFrame) -> None:
        if self.gone or self.closing:
            return
        if frame.sample_rate != ULAW_RATE:
            raise ValueError(f"agent audio at {frame.sample_rate} Hz; a phone line takes {ULAW_RATE} Hz")
        self._send(media_message(self.stream_sid, ulaw_encode(frame.pcm)))
        self._counts["frames_out"] += 1
        end = frame.end_timestamp
        self._last_end = end
        self._sent_end = max(self._sent_end, end)
        self._unmarked_s += frame.duration
        if self._unmarked_s >= self.mark_every_s - 1e-9:
            self._mark()
        self._arm_flush()

    async def send_digits(self, digits: str) -> None:
        """Press keys on the far end's keypad: in-band tones, as a handset sends them, after the audio
        sent so far; returns once the tones were heard. Twilio's Media Streams carry no DTMF message
        toward the call, and μ-law carries the tones intact."""
        if self.gone or self.closing:
            raise ConnectionError("the call is over: no keys can be pressed")
        await self.wait_heard("dtmf")
        pcm = dtmf_tones(digits, ULAW_RATE)
        start = max(now(), self._sent_end)
        for offset in range(0, len(pcm), FRAME_BYTES):
            self.queue_audio(0, AudioFrame(pcm[offset : offset + FRAME_BYTES], ULAW_RATE, start))
            start += FRAME_BYTES / ULAW_RATE
        self._mark()
        await self.wait_heard("dtmf")

    def send_clear(self) -> None:
        if self.gone:
            return
        self._send(clear_message(self.stream_sid))
        self._counts["clears"] += 1
        at = now()
        # What had not played by now never will: later cuts cannot claim more of it.
        self._sent_end = self.heard_until(at)
        for mark in self._pending.values():
            mark.cleared_at = at
            self._settled.append(mark)
        self._counts["marks_cleared"] += len(self._pending)
        self._pending.clear()
        self._unmarked_s = 0.0
        self._drained.set()

    def send_message(self, message: dict[str, Any]) -> None:
        """The session's client messages (state, transcripts): a phone line has no use for them."""

    def close(self, code: int, reason: str) -> None:
        """The session ended: let the caller hear the last words (≤ ``drain_timeout_s``), then hang up."""
        if self.closing:
            return
        self.closing = True
        self._stop_timers()
        if self.gone:
            self._close_socket(code, reason)
            return
        self._mark()
        self._closer = asyncio.create_task(
            self._drain_then_close(code, reason), name=f"twilio-drain-{self.session.id}"
        )

    async def _drain_then_close(self, code: int, reason: str) -> None:
        await self.wait_heard(reason)
        self._close_socket(code, reason)

    async def wait_heard(self, reason: str) -> None:
        """Until the caller has heard the audio sent so far (its marks echoed; ≤ ``drain_timeout_s``):
        whatever Twilio has not played when the stream ends (a hang-up, a transfer) is never heard."""
        if self.gone:
            return
        self._mark()
        try:
            async with asyncio.timeout(self.drain_timeout_s):
                await self._drained.wait()
        except TimeoutError:
            self._log.warning("twilio.drain_timeout", pending_marks=len(self._pending), reason=reason)

    # --- the owner's side --------------------------------------------------------------------------------

    def hung_up(self) -> None:
        """Twilio sent ``stop`` or the socket closed: the session ends, unless it ended first."""
        if self.gone:
            return
        self.gone = True
        self._stop_timers()
        self._drained.set()
        if not self.closing:
            self.session.end(self.hangup_reason)

    async def aclose(self) -> None:
        """Stop every task and timer of the leg (the socket is gone)."""
        self.gone = True
        self._stop_timers()
        self._drained.set()
        if self._closer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._closer

    def _stop_timers(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None


def dtmf_tones(digits: str, rate: int) -> PCM16:
    """The dual tones of ``digits`` (``0-9 * # A-D``), each followed by a short silence."""
    tone = np.arange(round(DTMF_TONE_S * rate)) / rate
    ramp = np.minimum(1.0, np.minimum(np.arange(len(tone)), np.arange(len(tone))[::-1]) / (0.005 * rate))
    gap = np.zeros(round(DTMF_GAP_S * rate))
    pieces: list[np.ndarray[Any, np.dtype[np.float64]]] = []
    for digit in digits:
        low = next((f for keys, f in _DTMF_LOW.items() if digit in keys), None)
        high = next((f for keys, f in _DTMF_HIGH.items() if digit in keys), None)
        if low is None or high is None:
            raise ValueError(f"not a keypad key: {digit!r}")
        wave = 0.35 * (np.sin(2 * np.pi * low * tone) + np.sin(2 * np.pi * high * tone)) * ramp
        pieces.extend([wave, gap])
    joined = np.concatenate(pieces) if pieces else np.zeros(0)
    return np.asarray(np.round(joined * 32767), dtype=np.int16)
