"""Coached calls in this process: a room of legs (customer, rep, coaches), the AI coach listening to it, and
the call record it leaves behind. No HTTP here: ``server/rooms.py`` turns sockets and requests into calls
on these objects.

    rooms = LiveRooms(platform, stack_for, max_rooms=20, max_per_org=10, idle_s=60)
    room = await rooms.create(org_id, "sales-agent")            # a call on the books, the clock running
    participant, token = room.add(Role.REP)                      # a single-use join token
    leg = room.connect(token, sink, channel, close)              # the rep's socket joins the room
    room.set_mode(coach_id, Mode.WHISPER); await room.end()

Every room and coach event goes to the platform's timeline under the call's session id, so the persister
stores it and ``GET /v1/calls/{id}/events`` streams it; ``session.started``/``session.ended`` move the
call's status as a live session's do. At the end the recording (customer left, everyone else right, and
each leg on its own) and the coach's summary (``metadata.coaching``) are kept with the call. A leg Parley
dialed through a carrier is kept too (``metadata.phone_legs``: its CallSid, the number dialed, how the
call ended and how long the carrier billed), and its minutes are the call's telephony (``usage``).

Each connected participant has a message channel (a callback the server turns into WebSocket JSON). What
goes on it depends on the role: reps and coaches see everything (transcripts, hint cards, metrics, who is
listening or whispering); a customer's channel never carries coaching: no hints, no metrics, no words it
could not hear, no participant it cannot hear.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import tempfile
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.analysis.coach import Hint, LiveCoach
from parley.audio.frame import PCM16, AudioFrame
from parley.audio.mixer import mix
from parley.audio.wav import write_wav
from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import RoomLeft, RoomModeChanged, RoomUtterance
from parley.engine.events import Event, EventType, now
from parley.engine.knowledge import KnowledgeIndex
from parley.engine.options import EngineStack
from parley.engine.transport import AudioOutput
from parley.platform.agents import NotFound
from parley.platform.calls import hash_token
from parley.platform.schemas import CallSummary
from parley.platform.usage import PHONE_LEGS, ROOM_TRANSPORT, finish_call, phone_leg_minutes
from parley.rooms import (
    ROOM_RATE,
    TICK_S,
    InvalidParticipant,
    Leg,
    Mode,
    Participant,
    Role,
    Room,
    RoomClosed,
    RoomFull,
    RoomRecording,
    UnknownParticipant,
    audible,
    default_mode,
    per_leg_transcription,
)
from parley.rooms.model import Emit, check_participant
from parley.rooms.room import MAX_PARTICIPANTS
from parley.rooms.transcriber import LegTranscriber
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus, InvalidStatusTransition
from parley.store.models import Call
from parley.store.types import utcnow

if TYPE_CHECKING:
    from parley.platform.runtime import Platform

log = structlog.get_logger("parley.platform.coached_room")

AI_COACH_ID = "ai-coach"
TOKEN_TTL_S = 600.0
"""A join token is good for ten minutes, once."""
COACH_TICK_S = 1.0
METRICS_EVERY = 2
"""Coach ticks between two metrics snapshots on the staff's channels (every 2 s)."""
HEARTBEAT_EVERY = 30
"""Coach ticks between two touches of the call row (recovery elsewhere sees the call is alive)."""
WHISPER_QUEUE = 4
"""Hints waiting to be whispered; past it a hint is shown, not said (a whisper minutes late helps no one)."""
STAFF = frozenset({Role.REP, Role.COACH})
"""Who sees coaching (hints, metrics, every transcript line): reps, coaches and supervisors."""
RESERVED_METADATA = ("room", "coaching", PHONE_LEGS)
"""Keys of the call's metadata the room writes; a request may not set them (its phone legs are billed)."""
LEG_ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
"""Twilio's final statuses of a dialed call; only ``completed`` was answered (and costs minutes)."""

StackFor = Callable[[AgentConfig, str], Awaitable[EngineStack]]
"""The agent's loaded models for an organization (the server's ``Engines``, with the org's secrets)."""
Channel = Callable[[dict[str, Any]], None]
"""A participant's message channel: never blocks (the server queues for the socket)."""
Closer = Callable[[str], None]
"""Tells the participant's connection to close (after what is queued), with the reason."""


class RoomNotFound(NotFound):
    """No such live room in this organization (another organization's room is not found either)."""


class TooManyRooms(Exception):
    """The process or the organization already runs as many rooms as allowed."""


class RoomUnavailable(Exception):
    """A room cannot be opened now: the server is draining, or the agent's models failed to load."""


class JoinRefused(PermissionError):
    """A join token that is unknown, used, expired, or for a room that has ended."""


@dataclass(slots=True)
class _Member:
    participant: Participant
    token_hash: str | None = None
    expires_at: float = 0.0
    channel: Channel | None = None
    close: Closer | None = None
    connected: bool = False

    @property
    def human(self) -> bool:
        """Connected over a channel (the AI coach has none)."""
        return self.connected and self.channel is not None


class _Discard:
    """The AI coach's ear: it hears the room (the mix is made for every leg) and throws it away."""

    sample_rate = ROOM_RATE

    async def write(self, frame: AudioFrame) -> None:
        return None

    async def clear(self) -> None:
        return None


def participant_view(participant: Participant, connected: bool) -> dict[str, Any]:
    return {
        "id": participant.id,
        "role": str(participant.role),
        "mode": str(participant.mode),
        "name": participant.name,
        "connected": connected,
    }


def hint_view(hint: Hint) -> dict[str, Any]:
    return {
        "id": hint.id,
        "refines": hint.refines,
        "trigger": hint.trigger,
        "text": hint.text,
        "source": hint.source,
        "latency_ms": hint.latency_ms,
        "whisper": hint.whisper,
        "role": hint.role,
    }


class CoachedRoom:
    """One live coached call: its room, its AI coach, its participants' channels and its call record.

    Made by ``CoachedRoom.open`` (or ``LiveRooms.create``); ends with ``end()`` — called by the API, by
    itself when nobody has been connected for ``idle_s`` or it ran ``max_duration_s``, or at shutdown.
    """

    def __init__(
        self,
        platform: Platform,
        *,
        org_id: str,
        call: CallSummary,
        agent: AgentConfig,
        stack: EngineStack,
        playbook: KnowledgeIndex | None = None,
        name: str = "",
        idle_s: float = 60.0,
        max_duration_s: float = 3600.0,
        token_ttl_s: float = TOKEN_TTL_S,
        on_ended: Callable[[CoachedRoom], None] | None = None,
        observe: Callable[[Event], None] | None = None,
    ) -> None:
        """``observe`` sees every event of the room as it is published (the server's metrics)."""
        self.id = f"room_{secrets.token_hex(6)}"
        self.org_id = org_id
        self.call = call
        self.agent = agent
        self.name = name
        self.created_at: datetime = utcnow()
        self.idle_s = idle_s
        self.max_duration_s = max_duration_s
        self.token_ttl_s = token_ttl_s
        self.end_reason: str | None = None
        self._platform = platform
        self._observe = observe
        self._stack = stack
        self._on_ended = on_ended
        self._members: dict[str, _Member] = {}
        self._tokens: dict[str, str] = {}
        """sha256 of an unused join token -> participant id."""
        self._roles: dict[str, Role] = {}
        """Everyone who ever joined (the recording keeps their legs after they left)."""
        self._origin = now()
        self._ending = False
        self._finishing: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.TimerHandle | None = None
        self._whispers: asyncio.Queue[str] = asyncio.Queue(WHISPER_QUEUE)
        self._whisperer: asyncio.Task[None] | None = None
        self.coach = LiveCoach(
            agent.coaching, self._coach_event, llm=stack.llm, playbook=playbook, on_hint=self._on_hint
        )
        self.room = Room(self.id, self._room_event, transcriber_factory=self._transcribers())
        self._clock: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        platform: Platform,
        org_id: str,
        agent_ref: str,
        stack_for: StackFor,
        *,
        name: str = "",
        metadata: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> CoachedRoom:
        """Put a call on the books for the organization's agent (id or name, its latest version pinned),
        load the agent's models and playbook, and start the room's clock. Raises ``NotFound`` for an
        unknown agent and ``RoomUnavailable`` when its models cannot be loaded."""
        call, config = await platform.calls.create(
            org_id,
            direction="inbound",
            transport=ROOM_TRANSPORT,
            agent_ref=agent_ref,
            access="token",
            metadata=dict(metadata) if metadata else None,
        )
        assert config is not None  # an agent_ref always gives its configuration (or NotFound)
        try:
            stack = await stack_for(config, org_id)
            if stack.recognizer.sample_rate != ROOM_RATE:  # each leg is heard at the room's rate
                raise ValueError(
                    f"its recogniser runs at {stack.recognizer.sample_rate} Hz; rooms need {ROOM_RATE} Hz"
                )
        except Exception as exc:
            log.warning("a coached room's models failed to load", call_id=call.id, error=repr(exc))
            with contextlib.suppress(InvalidStatusTransition):
                await platform.calls.set_status(call.id, CallStatus.FAILED, reason="models_unavailable")
            raise RoomUnavailable(f"the models for agent '{config.name}' failed to load: {exc}") from exc
        playbook = await _playbook(platform, call)
        room = cls(
            platform,
            org_id=org_id,
            call=call,
            agent=config,
            stack=stack,
            playbook=playbook,
            name=name,
            **options,
        )
        room._start()
        return room

    # --- who is in ----------------------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ending

    def participants(self) -> list[dict[str, Any]]:
        """Everyone invited or connected, in the order they were added."""
        return [participant_view(m.participant, m.connected) for m in self._members.values()]

    def metrics(self) -> dict[str, Any]:
        return self.coach.metrics.snapshot(now())

    def hints(self) -> list[dict[str, Any]]:
        return [hint_view(h) for h in self.coach.hints]

    def add(self, role: Role, mode: Mode | None = None, name: str = "") -> tuple[Participant, str]:
        """Invite a participant: its id and a single-use join token (good for ``token_ttl_s``).

        Raises ``RoomClosed`` once the room is ending, ``RoomFull`` when invitations and legs already
        fill it, ``InvalidParticipant`` for a name that is too long."""
        if self._ending:
            raise RoomClosed(f"room {self.id} has ended")
        self._forget_expired()
        if len(self._members) >= self.room.max_participants:
            raise RoomFull(f"room {self.id} already has {self.room.max_participants} participants")
        participant = Participant(f"p_{secrets.token_hex(5)}", role, mode or default_mode(role), name)
        check_participant(participant)
        token = secrets.token_urlsafe(32)
        digest = hash_token(token)
        self._members[participant.id] = _Member(participant, digest, now() + self.token_ttl_s)
        self._tokens[digest] = participant.id
        self._send_participants()
        return participant, token

    def check_token(self, token: str) -> bool:
        """Whether ``token`` would let someone join now (it is not spent by asking)."""
        member = self._invited(token)
        return member is not None and now() <= member.expires_at

    def connect(
        self,
        token: str,
        sink: AudioOutput,
        channel: Channel,
        close: Closer,
        *,
        hello: Mapping[str, Any] | None = None,
    ) -> Leg:
        """Spend a join token: the participant it was made for joins the room with this sink and channel.

        The channel first gets ``ready`` (with ``hello`` merged in), then everything the room says.
        Raises ``JoinRefused`` (unknown, used or expired token, or the room ended) or ``RoomFull``."""
        member = self._invited(token)
        if member is None:
            raise JoinRefused("this room token is unknown or was already used; ask for a new one")
        assert member.token_hash is not None
        del self._tokens[member.token_hash]
        member.token_hash = None
        if now() > member.expires_at:
            self._members.pop(member.participant.id, None)
            self._send_participants()
            raise JoinRefused(
                f"this room token expired (tokens live {self.token_ttl_s:g} s); ask for a new one"
            )
        member.channel, member.close, member.connected = channel, close, True
        channel(
            {
                "type": "ready",
                "room": {"id": self.id, "name": self.name, "agent": self.agent.name, "call_id": self.call.id},
                "participant": participant_view(member.participant, True),
                **(hello or {}),
            }
        )
        try:
            leg = self.room.join(member.participant, sink)
        except (RoomClosed, RoomFull):
            member.channel = member.close = None
            member.connected = False
            self._members.pop(member.participant.id, None)
            raise
        self._roles[member.participant.id] = member.participant.role
        self._disarm_idle()
        return leg

    def set_mode(self, participant_id: str, mode: Mode) -> dict[str, Any]:
        """Change who hears a participant, live (a supervisor's listen / whisper / barge)."""
        member = self._member(participant_id)
        if member.connected:
            self.room.set_mode(participant_id, mode)  # room.mode_changed follows
        elif member.participant.mode is not mode:
            member.participant = dataclasses.replace(member.participant, mode=mode)
            self._send_participants()
        return participant_view(member.participant, member.connected)

    async def remove(self, participant_id: str, reason: str = "removed") -> None:
        """A participant leaves (its connection is closed); an invitation is withdrawn."""
        member = self._member(participant_id)
        if member.connected:
            with contextlib.suppress(UnknownParticipant):  # it left on its own meanwhile
                await self.room.leave(participant_id, reason=reason)
            return
        self._members.pop(participant_id, None)
        if member.token_hash is not None:
            self._tokens.pop(member.token_hash, None)
        self._send_participants()

    async def end(self, reason: str = "ended") -> None:
        """End the call: everyone is told (``ended``) and disconnected, the recording and the coach's
        summary are stored, and the call is completed. Safe to call more than once, from anywhere."""
        if self._finishing is None:
            self._finishing = asyncio.create_task(self._finish(reason), name=f"end-{self.id}")
        await asyncio.shield(self._finishing)

    def emit(self, type_: EventType, /, **data: Any) -> None:
        """An event of this call from one of its legs' wires (a phone leg's keypad digits)."""
        self._emit(type_, **data)

    async def wait_ended(self) -> None:
        """Returns once the room has ended and its call is closed on the books (timeline flushed)."""
        await self._done.wait()

    def notify(self, message: dict[str, Any]) -> None:
        """Something every connected participant should read (a shutdown notice)."""
        for member in self._connected():
            self._deliver(member, message)

    # --- running ------------------------------------------------------------------------------------

    def _start(self) -> None:
        self._emit(EventType.SESSION_STARTED, agent=self.agent.name, room_id=self.id, name=self.name)
        if self.agent.coaching.enabled:
            ai = Participant(AI_COACH_ID, Role.COACH, Mode.WHISPER, name="AI coach")
            self._members[ai.id] = _Member(ai, connected=True)
            self._roles[ai.id] = ai.role
            self.room.join(ai, _Discard())
        self._clock = self._spawn(self.room.run(), f"room-clock-{self.id}")
        self._clock.add_done_callback(self._clock_stopped)
        self._ticker = self._spawn(self._tick(), f"room-ticker-{self.id}")
        self._arm_idle()

    def _clock_stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("a coached room's clock failed", room_id=self.id, error=repr(task.exception()))
        self._spawn(self.end("error"), f"end-{self.id}")

    async def _tick(self) -> None:
        """Once a second: the coach's time-based checks; every 2 s the metrics for the staff's pages;
        expired invitations forgotten; the call row touched; a room past its maximum duration ended."""
        count = 0
        while True:
            await asyncio.sleep(COACH_TICK_S)
            count += 1
            try:
                await self.coach.tick()
            except Exception:  # one missed check; the next tick tries again
                log.exception("the coach's tick failed", room_id=self.id)
            if count % METRICS_EVERY == 0:
                self._send_staff({"type": "metrics", "metrics": self.metrics()})
                self._forget_expired()
            if count % HEARTBEAT_EVERY == 0:
                await self._heartbeat()
            if now() - self._origin >= self.max_duration_s:
                self._spawn(self.end("max_duration"), f"end-{self.id}")
                return

    async def _heartbeat(self) -> None:
        try:
            async with self._platform.db.session() as session:
                await CallRepository(session).touch([self.call.id])
        except Exception as exc:  # the next beat tries again; a missed one only ages the row
            log.warning("coached room heartbeat failed", room_id=self.id, error=repr(exc))

    def _transcribers(self) -> Callable[[Participant, Emit], LegTranscriber | None]:
        """Every leg but the AI coach's (its words are the hints, already on the timeline) on its own."""
        stack, coach = self._stack, self.coach
        inner = per_leg_transcription(
            stack.recognizer,
            stack.vad_factory,
            endpointing=self.agent.endpointing,
            on_utterance=coach.on_utterance,
            on_speaking=lambda who, active: coach.on_speaking(str(who.role), active),
            roles=(Role.CUSTOMER, Role.REP, Role.COACH),
            vocabulary=self.agent.coaching.competitors,
        )

        def make(participant: Participant, emit: Emit) -> LegTranscriber | None:
            return None if participant.id == AI_COACH_ID else inner(participant, emit)

        return make

    # --- what the room and the coach say --------------------------------------------------------------

    def _emit(self, type_: EventType, /, **data: Any) -> None:
        self._publish(Event(type_, self.id, now(), data))

    def _publish(self, event: Event) -> None:
        event = dataclasses.replace(event, session_id=self.call.session_id)
        self._platform.bus.emit(event)
        if self._observe is not None:
            try:
                self._observe(event)
            except Exception:  # a metrics bug must not cost the call its timeline
                log.exception("observing a room event failed", room_id=self.id, event=str(event.type))

    def _coach_event(self, type_: EventType, data: dict[str, Any]) -> None:
        self._publish(Event(type_, self.id, now(), data))

    def _room_event(self, event: Event) -> None:
        self._publish(event)
        if event.type is EventType.ROOM_JOINED:
            self._send_participants()
        elif event.type is EventType.ROOM_LEFT:
            left = event.payload(RoomLeft)
            self._left(left.participant_id, left.reason or "left")
        elif event.type is EventType.ROOM_MODE_CHANGED:
            changed = event.payload(RoomModeChanged)
            self._mode_changed(changed.participant_id, changed.old, changed.new)
        elif event.type is EventType.ROOM_UTTERANCE:
            self._utterance(event.payload(RoomUtterance))

    def _left(self, participant_id: str, reason: str) -> None:
        member = self._members.pop(participant_id, None)
        if member is None:
            return
        member.connected = False
        if member.close is not None:
            member.close(self.end_reason or reason)
        member.channel = member.close = None
        self._send_participants()
        self._arm_idle()

    def _mode_changed(self, participant_id: str, old: str, new: str) -> None:
        member = self._members.get(participant_id)
        if member is None:
            return
        with contextlib.suppress(UnknownParticipant):
            member.participant = self.room.leg(participant_id).participant
        message = {"type": "mode", "participant_id": participant_id, "old": old, "new": new}
        for listener in self._connected():
            if listener.participant.role in STAFF or listener.participant.id == participant_id:
                self._deliver(listener, message)
        self._send_participants()

    def _utterance(self, said: RoomUtterance) -> None:
        """A final line to everyone who may read it. A transcript is final after its words were mixed,
        often after the speaker's mode changed or it left: who heard the words is the room's record of
        the modes it spoke them in, not its mode (or absence) now."""
        speaker_id = said.participant_id
        speaker = self.room.known(speaker_id)
        message = {
            "type": "utterance",
            "participant_id": speaker_id,
            "role": said.role,
            "name": speaker.name if speaker is not None else "",
            "text": said.text,
            "start_ms": round((said.start - self._origin) * 1000),
            "end_ms": round((said.end - self._origin) * 1000),
        }
        for member in self._connected():
            if self._may_read(member.participant, said):
                self._deliver(member, message)

    def _may_read(self, listener: Participant, said: RoomUtterance) -> bool:
        """Staff read every line; anyone reads their own; a customer reads only what it heard, all of it
        (a line spoken partly while muted or whispering is not the customer's)."""
        if listener.role in STAFF or listener.id == said.participant_id:
            return True
        return self.room.heard(said.participant_id, listener, said.start, said.end)

    async def _on_hint(self, hint: Hint) -> None:
        self._send_staff({"type": "hint", **hint_view(hint)})
        if not hint.whisper or AI_COACH_ID not in self._members or self._ending:
            return
        try:
            self._whispers.put_nowait(hint.text)
        except asyncio.QueueFull:
            log.info(
                "whisper queue full; this hint is shown, not said", room_id=self.id, trigger=hint.trigger
            )
            return
        if self._whisperer is None:
            self._whisperer = self._spawn(self._whisper(), f"room-whisper-{self.id}")

    async def _whisper(self) -> None:
        """The AI coach's voice: each hint synthesized and fed to its leg in real time, one at a time."""
        while True:
            text = await self._whispers.get()
            try:
                await self._speak(text)
            except asyncio.CancelledError:
                raise
            except Exception:  # this whisper is lost; the card was shown, the next one may work
                log.exception("whispering a hint failed", room_id=self.id)

    async def _speak(self, text: str) -> None:
        """Synthesized audio goes to the AI coach's leg 20 ms at a time on the monotonic clock, as a
        microphone would deliver it, starting with the first chunk the voice gives."""
        tts = self._stack.tts
        rate = tts.sample_rate
        step = max(1, round(rate * TICK_S))
        pending: PCM16 = np.zeros(0, np.int16)
        start: float | None = None
        sent = 0
        async for chunk in tts.synthesize(text):
            pending = np.concatenate([pending, chunk]) if pending.size else chunk
            while pending.size >= step:
                frame, pending = pending[:step], pending[step:]
                start = start if start is not None else now()
                await self._feed_paced(frame, rate, start + sent * TICK_S)
                sent += 1
        if pending.size:
            await self._feed_paced(pending, rate, (start if start is not None else now()) + sent * TICK_S)

    async def _feed_paced(self, pcm: PCM16, rate: int, at: float) -> None:
        delay = at - now()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            leg = self.room.leg(AI_COACH_ID)
        except UnknownParticipant:  # removed by a supervisor mid-whisper
            return
        leg.feed(AudioFrame(pcm, rate))

    # --- channels -------------------------------------------------------------------------------------

    def _connected(self) -> list[_Member]:
        return [m for m in self._members.values() if m.human]

    def _deliver(self, member: _Member, message: dict[str, Any]) -> None:
        if member.channel is None:
            return
        try:
            member.channel(message)
        except Exception:  # one page's broken channel must not silence the others
            log.exception("a room channel failed", room_id=self.id, participant_id=member.participant.id)

    def _send_staff(self, message: dict[str, Any]) -> None:
        """Hints and metrics: reps and coaches only, never a customer."""
        for member in self._connected():
            if member.participant.role in STAFF:
                self._deliver(member, message)

    def _send_participants(self) -> None:
        if self._ending:
            return
        everyone = [(m.participant, m.connected) for m in self._members.values()]
        for member in self._connected():
            listener = member.participant
            if listener.role in STAFF:
                shown = everyone
            else:  # a customer sees itself and who it can hear: never a listening or whispering coach
                shown = [(p, c) for p, c in everyone if p.id == listener.id or (c and audible(p, listener))]
            self._deliver(
                member, {"type": "participants", "participants": [participant_view(p, c) for p, c in shown]}
            )

    # --- invitations and idleness -------------------------------------------------------------------

    def _member(self, participant_id: str) -> _Member:
        member = self._members.get(participant_id)
        if member is None:
            raise UnknownParticipant(f"no participant {participant_id!r} in room {self.id}")
        return member

    def _invited(self, token: str) -> _Member | None:
        if self._ending or not token:
            return None
        participant_id = self._tokens.get(hash_token(token))
        member = self._members.get(participant_id) if participant_id is not None else None
        return member if member is not None and member.token_hash is not None else None

    def _forget_expired(self) -> None:
        at = now()
        expired = [
            m
            for m in self._members.values()
            if not m.connected and m.token_hash is not None and at > m.expires_at
        ]
        for member in expired:
            self._members.pop(member.participant.id, None)
            if member.token_hash is not None:
                self._tokens.pop(member.token_hash, None)
        if expired:
            self._send_participants()

    def _arm_idle(self) -> None:
        if self._idle is None and not self._ending and not self._connected():
            self._idle = asyncio.get_running_loop().call_later(self.idle_s, self._idle_out)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_out(self) -> None:
        self._idle = None
        if not self._connected():
            log.info("a coached room nobody is connected to ends", room_id=self.id, idle_s=self.idle_s)
            self._spawn(self.end("idle"), f"end-{self.id}")

    def _spawn(self, work: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- the end --------------------------------------------------------------------------------------

    async def _finish(self, reason: str) -> None:
        self._ending = True
        self.end_reason = reason
        self._disarm_idle()
        for member in self._connected():
            self._deliver(member, {"type": "ended", "reason": reason})
        recording: RoomRecording | None = None
        try:
            recording = await self.room.close()  # everyone leaves (sockets close), last words transcribed
        except Exception:  # the call must still be closed on the books
            log.exception("closing a coached room failed", room_id=self.id)
        await self.coach.close()
        # Cancelled too: tasks that asked for this end (``end()`` shields the work itself).
        background = [t for t in (self._ticker, self._whisperer, self._clock, *self._tasks) if t is not None]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        stored = await self._store_recording(recording)
        await self._store_summary(stored)
        self._emit(EventType.SESSION_ENDED, reason=reason)
        try:
            await self._platform.bus.flush()
        except Exception:  # the journal or Redis keeps what was emitted; the persister catches up
            log.exception("flushing a coached room's timeline failed", room_id=self.id)
        if self._on_ended is not None:
            self._on_ended(self)
        self._done.set()

    async def _store_recording(self, recording: RoomRecording | None) -> dict[str, Any]:
        """The call's recording: customer left, everyone else right (an observer's mix, whispers
        included); and each leg on its own beside it. Returns where the legs went."""
        if recording is None or recording.duration_s <= 0:
            return {}
        call_id = self.call.id
        try:
            legs = {pid: recording.leg(pid) for pid in recording.participant_ids}
            length = max((pcm.size for pcm in legs.values()), default=0)
            customer = [pcm for pid, pcm in legs.items() if self._roles.get(pid) is Role.CUSTOMER]
            others = [pcm for pid, pcm in legs.items() if self._roles.get(pid) is not Role.CUSTOMER]
            await self._platform.recordings.store(
                call_id, (mix(customer, length), mix(others, length)), ROOM_RATE
            )
            keys: dict[str, str] = {}
            with tempfile.TemporaryDirectory(prefix="parley-room-") as scratch:
                for pid, pcm in legs.items():
                    path = Path(scratch) / f"leg-{pid}.wav"
                    await asyncio.to_thread(write_wav, path, pcm, ROOM_RATE)
                    key = f"recordings/{call_id}/leg-{pid}.wav"
                    await self._platform.artifacts.put_file(key, path, "audio/wav", move=True)
                    keys[pid] = key
            return {
                "legs": keys,
                "truncated": recording.truncated,
                "duration_s": round(recording.duration_s, 2),
            }
        except Exception:  # the call's record must survive a storage failure
            log.exception("storing a coached room's recording failed", room_id=self.id, call_id=call_id)
            return {}

    async def _store_summary(self, recording: Mapping[str, Any]) -> None:
        """The coach's summary and who took part, in the call's metadata (``coaching``, ``room``)."""
        room = {
            "id": self.id,
            "name": self.name,
            "participants": [{"id": pid, "role": str(role)} for pid, role in self._roles.items()],
            "recording": dict(recording),
        }
        try:
            summary = self.coach.summary()
            async with self._platform.db.session() as session:
                row = await _locked_call(session, self.call.id)  # a phone leg's end may be written meanwhile
                if row is not None:
                    row.metadata_ = {**(row.metadata_ or {}), "room": room, "coaching": summary}
        except Exception:  # the call still completes; its timeline holds every trigger and hint
            log.exception("storing a coached room's summary failed", room_id=self.id, call_id=self.call.id)


async def _locked_call(session: AsyncSession, call_id: str) -> Call | None:
    """The call's row, read to change its metadata (the room's end and its phone legs' callbacks write it
    at the same moment): written first, so SQLite gives this transaction the one write lock and PostgreSQL
    the row's lock, and read after, so neither writer loses the other's keys."""
    await CallRepository(session).touch([call_id])
    return await session.scalar(
        select(Call).where(Call.id == call_id).with_for_update().execution_options(populate_existing=True)
    )


def _phone_legs(row: Call) -> list[dict[str, Any]]:
    legs = (row.metadata_ or {}).get(PHONE_LEGS)
    return [dict(leg) for leg in legs if isinstance(leg, dict)] if isinstance(legs, list) else []


async def _playbook(platform: Platform, call: CallSummary) -> KnowledgeIndex | None:
    """The agent's documents as the coach's playbook; a store failure leaves the coach without one."""
    if call.agent_id is None or call.org_id is None:
        return None
    try:
        return await platform.documents.index_for(call.org_id, call.agent_id)
    except Exception:
        log.exception("loading the playbook failed", call_id=call.id)
        return None


class LiveRooms:
    """The coached rooms of this process, per organization, within bounds."""

    def __init__(
        self,
        platform: Platform,
        stack_for: StackFor,
        *,
        max_rooms: int = 20,
        max_per_org: int = 10,
        idle_s: float = 60.0,
        max_duration_s: float = 3600.0,
        token_ttl_s: float = TOKEN_TTL_S,
        catalog: Callable[[str], AgentConfig | None] | None = None,
        observe: Callable[[Event], None] | None = None,
    ) -> None:
        """``catalog`` finds the operator's own agents (YAML) by name for the default organization,
        filed as stored agents on first use, as live sessions do."""
        self.platform = platform
        self.max_rooms = max_rooms
        self.max_per_org = max_per_org
        self.draining = False
        self._stack_for = stack_for
        self._catalog = catalog
        self._options: dict[str, Any] = {
            "idle_s": idle_s,
            "max_duration_s": max_duration_s,
            "token_ttl_s": token_ttl_s,
            "observe": observe,
        }
        self._rooms: dict[str, CoachedRoom] = {}
        self._opening: Counter[str] = Counter()
        self._empty = asyncio.Event()
        self._empty.set()

    def __len__(self) -> int:
        return len(self._rooms)

    async def create(
        self, org_id: str, agent_ref: str, *, name: str = "", metadata: Mapping[str, Any] | None = None
    ) -> CoachedRoom:
        """A new live room for the organization's agent. Raises ``TooManyRooms``, ``RoomUnavailable``
        (draining, models) or ``NotFound`` (no such agent)."""
        if self.draining:
            raise RoomUnavailable("the server is shutting down and opens no new rooms")
        self._reserve(org_id)
        try:
            try:
                room = await self._open(org_id, agent_ref, name, metadata)
            except NotFound:
                config = self._catalog(agent_ref) if self._catalog is not None else None
                if config is None or org_id != self.platform.default_org_id:
                    raise
                filed, _version = await self.platform.agents.ensure(org_id, config)
                room = await self._open(org_id, filed.id, name, metadata)
        finally:
            self._opening[org_id] -= 1
            if self._opening[org_id] <= 0:
                del self._opening[org_id]
        self._rooms[room.id] = room
        self._empty.clear()
        if self.draining:  # shutdown began while it opened
            await room.end("server_shutdown")
            raise RoomUnavailable("the server is shutting down and opens no new rooms")
        return room

    async def _open(
        self, org_id: str, agent_ref: str, name: str, metadata: Mapping[str, Any] | None
    ) -> CoachedRoom:
        return await CoachedRoom.open(
            self.platform,
            org_id,
            agent_ref,
            self._stack_for,
            name=name,
            metadata=metadata,
            on_ended=self._ended,
            **self._options,
        )

    def _reserve(self, org_id: str) -> None:
        live = sum(self._opening.values()) + len(self._rooms)
        if live >= self.max_rooms:
            raise TooManyRooms(f"this server runs its maximum of {self.max_rooms} rooms; end one first")
        mine = self._opening[org_id] + sum(1 for r in self._rooms.values() if r.org_id == org_id)
        if mine >= self.max_per_org:
            raise TooManyRooms(
                f"your organization has its maximum of {self.max_per_org} live rooms; end one first"
            )
        self._opening[org_id] += 1

    def get(self, org_id: str, room_id: str) -> CoachedRoom:
        room = self._rooms.get(room_id)
        if room is None or room.org_id != org_id:
            raise RoomNotFound(f"no live room {room_id!r}")
        return room

    def find(self, room_id: str) -> CoachedRoom | None:
        """Any organization's room, for a join token to be checked against (the token is the right)."""
        return self._rooms.get(room_id)

    def list(self, org_id: str) -> list[CoachedRoom]:
        return [room for room in self._rooms.values() if room.org_id == org_id]

    # --- phone legs on the books ----------------------------------------------------------------------

    async def phone_leg_dialed(
        self, call_id: str, participant: Participant, *, call_sid: str, to: str, from_: str
    ) -> None:
        """Keep a call Parley dialed into a room on the room's call (``metadata.phone_legs``): who it
        brings in, the number dialed and the caller id (as the organization gave them), and the carrier's
        id of it, which its status callbacks name. What a callback that came first said is kept."""
        async with self.platform.db.session() as session:
            row = await _locked_call(session, call_id)
            if row is None:
                log.warning("a dialed phone leg's room call is gone", call_id=call_id, call_sid=call_sid)
                return
            legs = _phone_legs(row)
            known = next((leg for leg in legs if leg.get("call_sid") == call_sid), None)
            record = {
                "call_sid": call_sid,
                "participant_id": participant.id,
                "role": str(participant.role),
                "to": to,
                "from": from_,
                "status": known.get("status") if known is not None else "queued",
                "duration_s": known.get("duration_s") if known is not None else None,
            }
            if known is None:
                legs.append(record)
            else:
                legs[legs.index(known)] = record
            row.metadata_ = {**(row.metadata_ or {}), PHONE_LEGS: legs}

    async def phone_leg_ended(
        self, call_id: str, participant_id: str, *, call_sid: str, status: str, duration_s: int | None
    ) -> bool:
        """A room's phone leg ended (Twilio's final status callback): how, and the seconds the carrier
        bills (``CallDuration``), are kept on the room's call, and a call already priced is priced again
        with them. Twilio reports a call's end once: a redelivered callback, or any later one for the same
        call, changes nothing (False); so does one naming a leg of another participant or another call."""
        if status not in LEG_ENDED:
            raise ValueError(f"{status!r} is not how a call ends")
        async with self.platform.db.session() as session:
            row = await _locked_call(session, call_id)
            if row is None or row.transport != ROOM_TRANSPORT:
                log.warning(
                    "a phone leg's end names no coached room's call", call_id=call_id, call_sid=call_sid
                )
                return False
            legs = _phone_legs(row)
            leg = next((leg for leg in legs if leg.get("call_sid") == call_sid), None)
            if leg is None:  # it overtook the dial's own record, which fills in the rest
                leg = {"call_sid": call_sid, "participant_id": participant_id, "status": None}
                legs.append(leg)
            elif leg.get("participant_id") != participant_id:
                log.warning(
                    "a phone leg's end names another participant",
                    call_id=call_id,
                    call_sid=call_sid,
                    participant_id=participant_id,
                )
                return False
            if leg.get("status") in LEG_ENDED and (leg.get("duration_s") is not None or duration_s is None):
                return False  # the carrier said so already
            billed = phone_leg_minutes(row)
            leg["status"], leg["duration_s"] = status, duration_s
            row.metadata_ = {**(row.metadata_ or {}), PHONE_LEGS: legs}
            repriced = row.ended_at is not None and phone_leg_minutes(row) != billed
            if repriced:  # the room's call was priced without this leg
                await finish_call(session, row, self.platform.pricing)
        log.info(
            "a room's phone leg ended",
            call_id=call_id,
            call_sid=call_sid,
            participant_id=participant_id,
            status=status,
            call_duration_s=duration_s,
            repriced=repriced,
        )
        return True

    def _ended(self, room: CoachedRoom) -> None:
        self._rooms.pop(room.id, None)
        if not self._rooms:
            self._empty.set()

    async def drain(self, grace_s: float) -> None:
        """At shutdown: no new rooms; every participant is told, rooms get ``grace_s`` to end, then the
        rest are ended (recordings and summaries stored, calls completed)."""
        self.draining = True
        for room in list(self._rooms.values()):
            room.notify(
                {
                    "type": "error",
                    "code": "shutting_down",
                    "message": f"the server is shutting down; this call ends within {grace_s:g} s",
                    "fatal": False,
                }
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._empty.wait()
        await self.close()

    async def close(self) -> None:
        """End every room now."""
        self.draining = True
        rooms = list(self._rooms.values())
        outcomes = await asyncio.gather(
            *(room.end("server_shutdown") for room in rooms), return_exceptions=True
        )
        for room, outcome in zip(rooms, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                log.error("ending a coached room failed", room_id=room.id, error=repr(outcome))


__all__ = [
    "AI_COACH_ID",
    "MAX_PARTICIPANTS",
    "CoachedRoom",
    "InvalidParticipant",
    "JoinRefused",
    "LiveRooms",
    "RoomNotFound",
    "RoomUnavailable",
    "TooManyRooms",
]
