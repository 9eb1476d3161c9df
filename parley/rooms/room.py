"""A room: one call with several legs, mixed on one 20 ms clock under a per-participant policy.

Each tick takes 20 ms of what every leg said (silence if it sent nothing), and writes to each listener
the mix of exactly the speakers ``audible`` lets it hear. The tick itself never waits on anyone: what
it writes goes into each leg's own outbound queue, emptied by a task per leg into that leg's sink, so a
slow listener falls behind (and loses its oldest audio) alone, and one whose sink fails is dropped with
``room.left`` (``reason: sink_failed``) while the others go on. Transcription and recording are fed
from the same tick, so their times are the room clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import structlog

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.mixer import mix
from parley.audio.resample import Resampler
from parley.engine.events import Event, EventType, TimelineSink, now
from parley.engine.transport import AudioOutput
from parley.rooms.model import (
    ROOM_RATE,
    TICK_S,
    TICK_SAMPLES,
    Mode,
    Participant,
    ParticipantExists,
    RoomClosed,
    RoomFull,
    UnknownParticipant,
    audible,
    check_participant,
)
from parley.rooms.recording import DEFAULT_MAX_SECONDS, RoomRecording
from parley.rooms.transcriber import LegTranscriber, TranscriberFactory

log = structlog.get_logger("parley.rooms.room")

MAX_PARTICIPANTS = 8
INBOUND_MAX_S = 1.0
"""What a leg may have said but the room not yet mixed; beyond it the oldest audio goes."""
PREBUFFER_S = 0.04
"""A leg starts being heard (again) once this much of its audio is waiting, so network jitter around
the tick does not chop its voice into 20 ms pieces."""
OUTBOUND_MAX_S = 1.0
"""Mixed audio a listener's sink may fall behind by; beyond it the oldest frames go."""
MAX_LAG_S = 0.2
"""How far ``run`` may fall behind its schedule and still catch up tick by tick; beyond it, it skips."""
MODE_HISTORY = 256
"""Mode changes kept per participant; words spoken before the oldest one kept count as heard by nobody."""


class Leg:
    """One participant's connection to the room: audio in with ``feed``, the mix out to ``sink``."""

    def __init__(self, room: Room, participant: Participant, sink: AudioOutput) -> None:
        self._room = room
        self.participant = participant
        self.sink = sink
        self.active = True
        self._in_resampler: Resampler | None = None
        self._in_rate: int | None = None
        self._inbound: deque[PCM16] = deque()
        self._buffered = 0
        self._inbound_max = int(room.inbound_max_s * ROOM_RATE)
        self._prebuffer = int(room.prebuffer_s * ROOM_RATE)
        self._starved = True
        self._out_resampler = Resampler(ROOM_RATE, sink.sample_rate)
        self._out_samples = 0
        self._out_origin: float | None = None
        self._outbound: asyncio.Queue[AudioFrame] = asyncio.Queue()
        self._outbound_max = max(1, int(OUTBOUND_MAX_S / TICK_S))
        self._writer: asyncio.Task[None] | None = None
        self.transcriber: LegTranscriber | None = None
        self.dropped_samples = 0
        """Inbound samples dropped because more than ``inbound_max_s`` was waiting."""
        self.dropped_frames_out = 0
        """Mixed frames dropped because the sink fell more than ``OUTBOUND_MAX_S`` behind."""
        self.starved_ticks = 0
        """Ticks this leg was silent because none of its audio was waiting (after it first spoke)."""
        self._heard = False

    @property
    def id(self) -> str:
        return self.participant.id

    def feed(self, frame: AudioFrame) -> None:
        """What this participant said, at any sample rate; never waits. Ignored once the leg has left."""
        if not self.active or frame.num_samples == 0:
            return
        if frame.sample_rate != self._in_rate:
            self._in_rate = frame.sample_rate
            self._in_resampler = (
                Resampler(frame.sample_rate, ROOM_RATE) if frame.sample_rate != ROOM_RATE else None
            )
        pcm = self._in_resampler.process(frame.pcm) if self._in_resampler else frame.pcm
        if pcm.size == 0:
            return
        self._inbound.append(pcm)
        self._buffered += pcm.size
        excess = self._buffered - self._inbound_max
        if excess > 0:
            self._drop_oldest(excess)

    @property
    def buffered_s(self) -> float:
        """Seconds of this participant's audio waiting for the next ticks."""
        return self._buffered / ROOM_RATE

    def _drop_oldest(self, count: int) -> None:
        first_drop = self.dropped_samples == 0
        self._discard(count)
        if first_drop:
            self._room._emit(
                EventType.INPUT_OVERFLOW,
                participant_id=self.id,
                max_s=self._inbound_max / ROOM_RATE,
            )

    def discard_waiting(self) -> None:
        """Forget what this participant said that the room has not mixed yet: an agent's audio its own
        line just flushed (a barge-in) was never heard by the caller, so nobody in the room hears it."""
        self._discard(self._buffered)

    def _discard(self, count: int) -> None:
        """Drop up to ``count`` of the oldest waiting samples (counted in ``dropped_samples``)."""
        count = min(count, self._buffered)
        while count > 0:
            head = self._inbound[0]
            if head.size <= count:
                self._inbound.popleft()
                count -= head.size
                self._buffered -= head.size
                self.dropped_samples += head.size
            else:
                self._inbound[0] = head[count:]
                self._buffered -= count
                self.dropped_samples += count
                count = 0

    def _take(self) -> PCM16:
        """The next tick of this participant's audio, silence where there is none (yet)."""
        if self._starved and self._buffered < max(self._prebuffer, 1):
            if self._heard:
                self.starved_ticks += 1
            return np.zeros(TICK_SAMPLES, np.int16)
        self._starved = False
        self._heard = True
        out = np.zeros(TICK_SAMPLES, np.int16)
        filled = 0
        while filled < TICK_SAMPLES and self._inbound:
            head = self._inbound[0]
            take = min(TICK_SAMPLES - filled, head.size)
            out[filled : filled + take] = head[:take]
            filled += take
            if take == head.size:
                self._inbound.popleft()
            else:
                self._inbound[0] = head[take:]
        self._buffered -= filled
        if self._buffered == 0:
            self._starved = True  # wait for a little audio again before playing on
        return out

    def _deliver(self, pcm: PCM16, t: float) -> None:
        """Queue one tick of this listener's mix for its sink; the oldest goes if the sink is behind."""
        out = self._out_resampler.process(pcm)
        if self._out_origin is None:
            self._out_origin = t
        if out.size == 0:
            return
        frame = AudioFrame(
            out, self.sink.sample_rate, self._out_origin + self._out_samples / self.sink.sample_rate
        )
        self._out_samples += out.size
        if self._outbound.qsize() >= self._outbound_max:
            self._outbound.get_nowait()
            self._outbound.task_done()
            self.dropped_frames_out += 1
            if self.dropped_frames_out == 1:
                log.warning(
                    "room listener is too slow; dropping its oldest audio",
                    room_id=self._room.id,
                    participant_id=self.id,
                )
        self._outbound.put_nowait(frame)
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_out())

    async def _write_out(self) -> None:
        while True:
            frame = await self._outbound.get()
            try:
                await self.sink.write(frame)
            except Exception as exc:  # this listener is gone; the room goes on without it
                log.warning(
                    "room sink failed; removing the leg",
                    room_id=self._room.id,
                    participant_id=self.id,
                    error=repr(exc),
                )
                self._outbound.task_done()
                while not self._outbound.empty():  # nobody will write these: release ``drain``
                    self._outbound.get_nowait()
                    self._outbound.task_done()
                await self._room._remove(self, reason="sink_failed", error=repr(exc))
                return
            self._outbound.task_done()

    async def drain(self) -> None:
        """Returns once the sink got every frame mixed for it and the transcriber heard what it was fed."""
        if self._writer is not None and not self._writer.done():
            await self._outbound.join()
        if self.transcriber is not None:
            await self.transcriber.drain()

    async def _close(self) -> None:
        self.active = False
        writer = self._writer
        if writer is not None and writer is not asyncio.current_task():
            writer.cancel()
            await asyncio.gather(writer, return_exceptions=True)
        if self.transcriber is not None:
            await self.transcriber.close()


class Room:
    """One call with several legs; 16 kHz mono inside, 20 ms ticks.

    ``run()`` drives the clock in real time; ``tick()`` is one step of it, which tests call directly.
    ``timeline`` is a ``TimelineSink`` or any callable taking an ``Event``; the events' ``session_id``
    is the room's id. With a ``transcriber_factory`` each leg is transcribed on its own; with
    ``record`` the room keeps a ``RoomRecording``, returned by ``close()``.
    """

    def __init__(
        self,
        room_id: str,
        timeline: TimelineSink | Callable[[Event], None],
        *,
        transcriber_factory: TranscriberFactory | None = None,
        max_participants: int = MAX_PARTICIPANTS,
        record: bool = True,
        max_recording_s: float = DEFAULT_MAX_SECONDS,
        inbound_max_s: float = INBOUND_MAX_S,
        prebuffer_s: float = PREBUFFER_S,
    ) -> None:
        if max_participants < 1:
            raise ValueError(f"max_participants must be at least 1, got {max_participants}")
        if not 0 <= prebuffer_s < inbound_max_s:
            raise ValueError(f"need 0 <= prebuffer_s < inbound_max_s, got {prebuffer_s} and {inbound_max_s}")
        self.id = room_id
        emit = getattr(timeline, "emit", None)
        self._sink = cast(Callable[[Event], None], emit if callable(emit) else timeline)
        self._transcriber_factory = transcriber_factory
        self.max_participants = max_participants
        self.inbound_max_s = inbound_max_s
        self.prebuffer_s = prebuffer_s
        self.recording = RoomRecording(max_seconds=max_recording_s, emit=self._emit) if record else None
        self._legs: dict[str, Leg] = {}
        self._history: dict[str, list[tuple[float, Participant]]] = {}
        """Everyone who ever joined, as they were from when on (room clock), kept after they left: who
        heard a line is decided by the modes its words were spoken in, which may be final after a
        mode change or after the speaker left."""
        self._origin = now()
        self.ticks = 0
        """Ticks done so far; the room clock is ``origin + ticks * 20 ms``."""
        self._closed = False
        self._running: asyncio.Event | None = None

    # --- who is in ----------------------------------------------------------------------------------

    @property
    def time(self) -> float:
        """The room clock (monotonic seconds) at the start of the next tick."""
        return self._origin + self.ticks * TICK_S

    @property
    def participants(self) -> list[Participant]:
        return [leg.participant for leg in self._legs.values()]

    def leg(self, participant_id: str) -> Leg:
        try:
            return self._legs[participant_id]
        except KeyError:
            raise UnknownParticipant(f"no participant {participant_id!r} in room {self.id}") from None

    def known(self, participant_id: str) -> Participant | None:
        """Who a participant is, or was when it left (role, mode, name); None if it never joined."""
        history = self._history.get(participant_id)
        return history[-1][1] if history else None

    def heard(self, speaker_id: str, listener: Participant, start: float, end: float) -> bool:
        """Whether ``listener`` heard all of what ``speaker_id`` said from ``start`` to ``end`` (room clock).

        Judged by every mode the speaker was in over that span (kept after it left), not by its mode now:
        a transcript is final well after its words were mixed. Words spoken partly in a mode the
        listener cannot hear, or before the oldest mode kept, count as not heard.
        """
        history = self._history.get(speaker_id)
        if not history or start < history[0][0]:
            return False
        first = 0
        for i, (since, _) in enumerate(history):
            if since > start:
                break
            first = i
        in_force = [p for since, p in history[first + 1 :] if since < end]
        return all(audible(p, listener) for p in [history[first][1], *in_force])

    def _remember(self, participant: Participant) -> None:
        """``participant`` as it is from the next tick on (the room clock's ``time``)."""
        history = self._history.get(participant.id)
        if history is None:  # nothing it says can come before its first tick
            self._history[participant.id] = [(-math.inf, participant)]
            return
        history.append((self.time, participant))
        del history[:-MODE_HISTORY]

    def join(self, participant: Participant, sink: AudioOutput) -> Leg:
        """Add a leg: from the next tick it hears (and is heard) as its mode says."""
        if self._closed:
            raise RoomClosed(f"room {self.id} is closed")
        check_participant(participant)
        if participant.id in self._legs:
            raise ParticipantExists(f"participant {participant.id!r} is already in room {self.id}")
        if len(self._legs) >= self.max_participants:
            raise RoomFull(f"room {self.id} already holds {self.max_participants} participants")
        if sink.sample_rate <= 0:
            raise ValueError(f"sink sample_rate must be positive, got {sink.sample_rate}")
        leg = Leg(self, participant, sink)
        if self._transcriber_factory is not None:
            leg.transcriber = self._transcriber_factory(participant, self._emit)
        self._legs[participant.id] = leg
        self._remember(participant)
        self._emit(
            EventType.ROOM_JOINED,
            participant_id=participant.id,
            role=str(participant.role),
            mode=str(participant.mode),
            name=participant.name,
        )
        return leg

    def set_mode(self, participant_id: str, mode: Mode) -> None:
        """Change who hears this participant; the next tick mixes by the new mode."""
        leg = self.leg(participant_id)
        old = leg.participant.mode
        if mode is old:
            return
        leg.participant = dataclasses.replace(leg.participant, mode=mode)
        self._remember(leg.participant)
        if leg.transcriber is not None:  # what was said before is no pre-roll of what is said now
            leg.transcriber.fence(self.time)
        self._emit(EventType.ROOM_MODE_CHANGED, participant_id=participant_id, old=str(old), new=str(mode))

    async def leave(self, participant_id: str, *, reason: str = "left") -> None:
        """Remove a leg: it hears no more, and its transcript is finished (the utterance under way too)."""
        await self._remove(self.leg(participant_id), reason=reason)

    async def _remove(self, leg: Leg, *, reason: str, **data: Any) -> None:
        if self._legs.get(leg.id) is not leg:
            return
        del self._legs[leg.id]
        self._emit(
            EventType.ROOM_LEFT, participant_id=leg.id, role=str(leg.participant.role), reason=reason, **data
        )
        await leg._close()

    # --- the clock ----------------------------------------------------------------------------------

    async def tick(self) -> None:
        """One 20 ms step: take each leg's audio, record and transcribe it, write each listener its mix.

        Nothing in here waits, so a mode change or a leave lands between two ticks, never inside one.
        """
        if self._closed:
            return
        t = self.time
        position = self.ticks * TICK_SAMPLES
        legs = list(self._legs.values())
        said = {leg.id: leg._take() for leg in legs}
        if self.recording is not None:
            self.recording.add(position, said, TICK_SAMPLES)
        for leg in legs:
            if leg.transcriber is not None:
                leg.transcriber.feed(AudioFrame(said[leg.id], ROOM_RATE, t))
        for listener in legs:
            heard = [said[s.id] for s in legs if audible(s.participant, listener.participant)]
            listener._deliver(mix(heard, TICK_SAMPLES), t)
        self.ticks += 1

    async def run(self) -> None:
        """Tick every 20 ms on the monotonic clock until ``close``.

        Each tick is scheduled from the start time (start + n * 20 ms), so sleeping late never adds up
        to drift. A loop that stalls catches up tick by tick for up to ``MAX_LAG_S``; past that, the
        missed ticks are skipped with the audio legs sent for them (the room clock moves on with real
        time, the recording has a gap of silence) and a warning is logged.
        """
        if self._running is not None:
            raise RuntimeError(f"room {self.id} is already running")
        self._running = asyncio.Event()
        try:
            start = now()
            self._origin = start - self.ticks * TICK_S  # the room clock is the monotonic clock from here
            done = 0
            while not self._closed:
                await self.tick()
                done += 1
                delay = start + done * TICK_S - now()
                if delay < -MAX_LAG_S:
                    skipped = int(-delay / TICK_S)
                    log.warning("room clock fell behind; skipping ticks", room_id=self.id, skipped=skipped)
                    done += skipped
                    self.ticks += skipped
                    delay += skipped * TICK_S
                    for leg in self._legs.values():  # what was said in the skipped time goes with it
                        leg._discard(skipped * TICK_SAMPLES)
                await asyncio.sleep(max(0.0, delay))  # yields even when behind, so writers get to run
        finally:
            self._running.set()

    async def drain(self) -> None:
        """Returns once every sink got what was mixed for it and every transcriber heard what it was fed
        (for tests and an orderly close; a sink that never returns keeps this waiting)."""
        for leg in list(self._legs.values()):
            await leg.drain()

    async def close(self) -> RoomRecording | None:
        """Stop the clock, let everyone leave (finishing their transcripts) and hand back the recording."""
        if self._closed:
            return self.recording
        self._closed = True
        if self._running is not None:
            await self._running.wait()
        # In parallel: each leg's last words may wait on its own recogniser.
        await asyncio.gather(*(self._remove(leg, reason="room_closed") for leg in list(self._legs.values())))
        return self.recording

    # --- plumbing -----------------------------------------------------------------------------------

    def _emit(self, type_: EventType, /, **data: Any) -> None:
        self._sink(Event(type_, self.id, now(), data))
