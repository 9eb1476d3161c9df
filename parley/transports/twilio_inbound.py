"""What every Twilio Media Stream leg does with what Twilio sends: the inbound half both kinds of phone
leg share (a live session's, ``twilio_media.py``; a room participant's, ``twilio_room_leg.py``).

Each ``media`` message is one 20 ms μ-law frame. It is decoded into a ``JitterBuffer`` keyed by its
``chunk`` (which counts media messages only, so a ``dtmf`` in between is no gap): duplicates are
dropped, reordered frames put back in order, a lost one concealed once ``jitter_ms`` of later frames are
there. What the in-order frames, keys, mark echoes and ``stop`` mean is the leg's own. A message that
cannot be used is logged (the first few, then every hundredth) and counted, and the leg goes on.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from structlog.typing import FilteringBoundLogger

from parley.audio.codecs import ulaw_decode
from parley.audio.jitter import JitterBuffer
from parley.engine.events import now
from parley.transports.twilio_protocol import (
    FRAME_BYTES,
    FRAME_MS,
    ULAW_RATE,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    TwilioMessage,
    TwilioProtocolError,
    parse_message,
)

LOGGED_BAD_MESSAGES = 10
"""Bad messages logged one by one; later ones are only counted (and logged every hundredth)."""


class MediaStreamInbound(ABC):
    """The inbound side of a Media Stream (after its ``start``): parsing, dispatch, the jitter buffer.

    A leg subclasses it and says what the caller's frames mean (``_frames_ready``: pop them from
    ``jitter``), and what a key (``_on_digit``), a mark echo (``_on_mark``) and ``stop`` (``hung_up``) do.
    """

    stopped_event = "twilio.stream_stopped"
    """What the log says when Twilio stops the stream."""

    def __init__(
        self,
        stream_sid: str,
        send: Callable[[str], None],
        close_socket: Callable[[int, str], None],
        *,
        jitter_ms: int,
        log: FilteringBoundLogger,
        counters: Iterable[str] = (),
    ) -> None:
        self.stream_sid = stream_sid
        self._send = send
        self._close_socket = close_socket
        self._log = log
        self._wait_frames = max(1, round(jitter_ms / FRAME_MS))
        # μ-law is one byte per sample: a 160-byte frame is 160 samples
        self.jitter = JitterBuffer(FRAME_BYTES, ULAW_RATE)
        self.gone = False
        """The caller hung up (``stop``) or the socket closed: nothing more is heard or sent."""
        self._counts = dict.fromkeys(("frames_in", *counters, "bad_messages"), 0)

    def _stats(self) -> dict[str, int]:
        """The leg's counts and the jitter buffer's, for its stats record."""
        j = self.jitter.stats
        return {
            **self._counts,
            "jitter_lost": j.lost,
            "jitter_late": j.late,
            "jitter_duplicates": j.duplicates,
        }

    def on_text(self, text: str | bytes) -> None:
        """One message from Twilio. Never raises: what cannot be used is logged and skipped."""
        try:
            message = parse_message(text)
        except TwilioProtocolError as exc:
            self._bad(exc.kind, str(exc))
            return
        self.on_message(message)

    def on_message(self, message: TwilioMessage) -> None:
        if self.gone:
            return
        if isinstance(message, Media):
            if message.track != "inbound":
                return  # a <Start> stream's copy of what the caller hears: not the caller
            self._counts["frames_in"] += 1
            arrival = now()
            self.jitter.put(message.chunk % 65536, ulaw_decode(message.payload), arrival)
            self._frames_ready(arrival)
        elif isinstance(message, Mark):
            self._on_mark(message.name)
        elif isinstance(message, Dtmf):
            self._on_digit(message.digit)
        elif isinstance(message, Stop):
            self._log.info(self.stopped_event)
            self.hung_up()
        elif isinstance(message, Start | Connected):
            self._bad("out_of_order", f"'{type(message).__name__.lower()}' after the stream started")

    @abstractmethod
    def _frames_ready(self, arrival: float) -> None:
        """A caller's frame went into ``jitter`` (arrived at ``arrival``): take what is in order."""

    @abstractmethod
    def _on_digit(self, digit: str) -> None:
        """The caller pressed a key."""

    def _on_mark(self, name: str) -> None:
        """Twilio played the audio before mark ``name``: nothing to do for a leg that sends no marks."""
        return None

    @abstractmethod
    def hung_up(self) -> None:
        """Twilio sent ``stop`` or the socket closed."""

    def _bad(self, kind: str, message: str) -> None:
        count = self._counts["bad_messages"] = self._counts["bad_messages"] + 1
        if count <= LOGGED_BAD_MESSAGES or count % 100 == 0:
            self._log.warning("twilio.bad_message", kind=kind, error=message[:300], count=count)
