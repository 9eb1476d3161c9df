"""One Twilio Media Stream as a leg of a room: the caller's voice in, the mix the room makes for them out.

A phone leg in a room is simpler than a phone leg on a live session (``twilio_media.py``): there is no
agent reply to cut on barge-in, so no marks and no ``heard_until``; the room's clock already paces the
audio. What it shares with it is the wire (``twilio_protocol.py``), the G.711 codec and the inbound
half (``twilio_inbound.py``: parsing, the jitter buffer, bad messages counted).

- **In**: each ``media`` message is one 20 ms μ-law frame, decoded into the jitter buffer (duplicates
  dropped, reordered frames put back in order, a lost one concealed once ``jitter_ms`` of later frames
  are there). In-order frames go straight to ``Leg.feed`` at 8 kHz; the room resamples them and its own
  inbound buffer absorbs bursts.
- **Out**: the room writes this leg's mix to it as its sink (``sample_rate`` 8000) once per tick, in
  real time; every full 20 ms is μ-law encoded and sent as one ``media`` message through ``send``
  (the socket's bounded, ordered writer), so Twilio's playout buffer stays one or two frames deep.
- **Control**: ``dtmf`` goes to ``on_dtmf`` (a timeline event), ``stop`` (or the socket closing, through
  ``hung_up``) makes the participant leave with reason ``hangup``. A message that cannot be used is
  logged and counted, and the leg goes on.

Nothing here knows FastAPI or the platform: text goes out through a callable, the socket closes through
another, and leaving the room is the ``leave`` callable given to ``attach``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import structlog

from parley.audio.codecs import ulaw_encode
from parley.audio.frame import PCM16, AudioFrame
from parley.engine.keypad import KEYPAD_DIGITS
from parley.rooms.model import RoomError
from parley.rooms.room import Leg
from parley.transports.twilio_inbound import MediaStreamInbound
from parley.transports.twilio_protocol import FRAME_BYTES, ULAW_RATE, clear_message, media_message

log = structlog.get_logger("parley.transports.twilio_room_leg")

HANGUP = "hangup"
"""Why a phone participant leaves when the caller hangs up (``stop``) or the stream drops."""

Leave = Callable[[str], Awaitable[None]]
"""Take the participant out of the room, with a reason (``Room.leave`` bound to its id)."""


@dataclass(frozen=True, slots=True)
class RoomLegStats:
    frames_in: int
    frames_out: int
    bad_messages: int
    digits: int
    jitter_lost: int
    jitter_late: int
    jitter_duplicates: int


class TwilioRoomLeg(MediaStreamInbound):
    """A Media Stream (after its ``start``) as a room participant's connection.

    Give it to the room as the participant's sink, then ``attach`` the ``Leg`` the room returned. The
    owner feeds Twilio's messages to ``on_text``, calls ``hung_up`` when the socket closes and ``aclose``
    when done; ``hang_up`` is for the room's side ending the line (the participant was removed, the room
    ended): it closes the stream, which with ``<Connect>`` ends the phone call.
    """

    sample_rate = ULAW_RATE
    stopped_event = "twilio.room_stream_stopped"

    def __init__(
        self,
        stream_sid: str,
        send: Callable[[str], None],
        close_socket: Callable[[int, str], None],
        *,
        on_dtmf: Callable[[str], None] | None = None,
        jitter_ms: int = 40,
        room_id: str | None = None,
        call_sid: str | None = None,
    ) -> None:
        super().__init__(
            stream_sid,
            send,
            close_socket,
            jitter_ms=jitter_ms,
            log=log.bind(room_id=room_id, call_sid=call_sid, stream_sid=stream_sid),
            counters=("frames_out", "digits"),
        )
        self._on_dtmf = on_dtmf
        self.leg: Leg | None = None
        self._leave: Leave | None = None
        self._leaving: asyncio.Task[None] | None = None
        self._out: PCM16 = np.zeros(0, np.int16)
        self.closed = False
        """The room's side closed the stream (``hang_up``)."""

    def attach(self, leg: Leg, leave: Leave) -> None:
        """The leg the room made for this stream, and how its participant leaves."""
        self.leg = leg
        self._leave = leave
        self._log = self._log.bind(participant_id=leg.id)

    @property
    def stats(self) -> RoomLegStats:
        return RoomLegStats(**self._stats())

    # --- inbound: what the caller says (a ``mark`` echo needs nothing: this leg sends no marks) ------

    def _frames_ready(self, arrival: float) -> None:
        leg = self.leg
        if leg is None or self.closed:
            return
        for pcm in self.jitter.pop_ready(self._wait_frames):
            leg.feed(AudioFrame(pcm, ULAW_RATE))

    def _on_digit(self, digit: str) -> None:
        if digit not in KEYPAD_DIGITS:
            self._bad("bad_digit", f"not a keypad digit: {digit!r}")
            return
        self._counts["digits"] += 1
        if self._on_dtmf is not None:
            self._on_dtmf(digit)

    # --- outbound: the room's sink ------------------------------------------------------------------

    async def write(self, frame: AudioFrame) -> None:
        """One tick of this participant's mix: sent as soon as a whole 20 ms frame is there."""
        if self.gone or self.closed:
            return
        if frame.sample_rate != ULAW_RATE:
            raise ValueError(f"room audio at {frame.sample_rate} Hz; a phone line takes {ULAW_RATE} Hz")
        pcm = np.concatenate([self._out, frame.pcm]) if self._out.size else frame.pcm
        whole = pcm.size - pcm.size % FRAME_BYTES
        for offset in range(0, whole, FRAME_BYTES):
            self._send(media_message(self.stream_sid, ulaw_encode(pcm[offset : offset + FRAME_BYTES])))
            self._counts["frames_out"] += 1
        self._out = pcm[whole:].copy()

    async def clear(self) -> None:
        """Drop what Twilio buffered for the caller and has not played."""
        if self.gone or self.closed:
            return
        self._out = np.zeros(0, np.int16)
        self._send(clear_message(self.stream_sid))

    # --- the ends of the line -----------------------------------------------------------------------

    def hung_up(self) -> None:
        """Twilio sent ``stop`` or the socket closed: the participant leaves (``hangup``), once."""
        if self.gone:
            return
        self.gone = True
        if self._leave is not None and not self.closed:
            self._leaving = asyncio.get_running_loop().create_task(
                self._leave_room(), name=f"twilio-room-leave-{self.stream_sid}"
            )

    async def _leave_room(self) -> None:
        assert self._leave is not None
        try:
            await self._leave(HANGUP)
        except RoomError as exc:  # removed or closed meanwhile: the participant is gone either way
            self._log.info("twilio.room_leg_already_gone", reason=str(exc))
        except Exception:  # a bug: logged, the stream is over anyway
            self._log.exception("twilio.room_leave_failed")

    def hang_up(self, code: int = 1000, reason: str = "removed") -> None:
        """The room's side ends the line: no more audio, and the stream (with it the call) closes."""
        if self.closed:
            return
        self.closed = True
        if not self.gone:
            self._close_socket(code, reason)

    async def aclose(self) -> None:
        """Wait for the participant to have left (after ``hung_up``)."""
        self.gone = True
        if self._leaving is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._leaving
