"""One coached call in this process: a room of legs (customer, rep, coaches), the AI coach listening to it,
and the call record it leaves behind. No HTTP here: ``server/rooms.py`` turns sockets and requests into
calls on these objects.

    rooms = LiveRooms(platform, stack_for, max_rooms=20, max_per_org=10, idle_s=60)  # live_rooms.py
    room = await rooms.create(org_id, "sales-agent")            # a call on the books, the clock running
    participant, token = room.add(Role.REP)                      # a single-use join token
    leg = room.connect(token, sink, channel, close)              # the rep's socket joins the room
    room.set_mode(coach_id, Mode.WHISPER); await room.end()

Every room and coach event goes to the platform's timeline under the call's session id, so the persister
stores it and ``GET /v1/calls/{id}/events`` streams it; ``session.started``/``session.ended`` move the
call's status as a live session's do. The room's parts live beside it, each a concept of its own:
``room_roster`` (who is in, what each may read), ``coach_voice`` (the AI coach's whispers) and
``room_record`` (the recording, summary and phone legs kept with the call).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog

from parley.analysis.coach import Hint, LiveCoach
from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import RoomLeft, RoomModeChanged, RoomUtterance
from parley.engine.events import Event, EventType, now
from parley.engine.knowledge import KnowledgeIndex
from parley.engine.options import EngineStack
from parley.engine.transport import AudioOutput
from parley.platform.coach_voice import CoachVoice, Discard
from parley.platform.room_record import store_recording, store_summary
from parley.platform.room_roster import Channel, Closer, Member, Roster, hint_view, participant_view
from parley.platform.schemas import CallSummary
from parley.platform.usage import ROOM_TRANSPORT
from parley.rooms import (
    ROOM_RATE,
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
    default_mode,
    per_leg_transcription,
)
from parley.rooms.model import Emit, check_participant
from parley.rooms.room import MAX_PARTICIPANTS
from parley.rooms.transcriber import LegTranscriber
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus, InvalidStatusTransition
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
StackFor = Callable[[AgentConfig, str], Awaitable[EngineStack]]
"""The agent's loaded models for an organization (the server's ``Engines``, with the org's secrets)."""


class RoomUnavailable(Exception):
    """A room cannot be opened now: the server is draining, or the agent's models failed to load."""


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
        self._roles: dict[str, Role] = {}
        """Everyone who ever joined (the recording keeps their legs after they left)."""
        self._origin = now()
        self._finishing: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle: asyncio.TimerHandle | None = None
        self.coach = LiveCoach(
            agent.coaching, self._coach_event, llm=stack.llm, playbook=playbook, on_hint=self._on_hint
        )
        self.room = Room(self.id, self._room_event, transcriber_factory=self._transcribers())
        self._roster = Roster(self.room)
        self._voice = CoachVoice(self.room, AI_COACH_ID, stack.tts, self._spawn)
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
        return self._roster.ending

    def participants(self) -> list[dict[str, Any]]:
        """Everyone invited or connected, in the order they were added."""
        return self._roster.views()

    def metrics(self) -> dict[str, Any]:
        return self.coach.metrics.snapshot(now())

    def hints(self) -> list[dict[str, Any]]:
        return [hint_view(h) for h in self.coach.hints]

    def add(self, role: Role, mode: Mode | None = None, name: str = "") -> tuple[Participant, str]:
        """Invite a participant: its id and a single-use join token (good for ``token_ttl_s``).

        Raises ``RoomClosed`` once the room is ending, ``RoomFull`` when invitations and legs already
        fill it, ``InvalidParticipant`` for a name that is too long."""
        if self._roster.ending:
            raise RoomClosed(f"room {self.id} has ended")
        self._roster.forget_expired()
        if len(self._roster.members) >= self.room.max_participants:
            raise RoomFull(f"room {self.id} already has {self.room.max_participants} participants")
        participant = Participant(f"p_{secrets.token_hex(5)}", role, mode or default_mode(role), name)
        check_participant(participant)
        token = self._roster.invite(participant, self.token_ttl_s)
        return participant, token

    def check_token(self, token: str) -> bool:
        """Whether ``token`` would let someone join now (it is not spent by asking)."""
        return self._roster.check(token)

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
        member = self._roster.spend(token, self.token_ttl_s)
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
            self._roster.members.pop(member.participant.id, None)
            raise
        self._roles[member.participant.id] = member.participant.role
        self._disarm_idle()
        return leg

    def set_mode(self, participant_id: str, mode: Mode) -> dict[str, Any]:
        """Change who hears a participant, live (a supervisor's listen / whisper / barge)."""
        member = self._roster.member(participant_id)
        if member.connected:
            self.room.set_mode(participant_id, mode)  # room.mode_changed follows
        elif member.participant.mode is not mode:
            member.participant = dataclasses.replace(member.participant, mode=mode)
            self._roster.send_participants()
        return participant_view(member.participant, member.connected)

    async def remove(self, participant_id: str, reason: str = "removed") -> None:
        """A participant leaves (its connection is closed); an invitation is withdrawn."""
        member = self._roster.member(participant_id)
        if member.connected:
            with contextlib.suppress(UnknownParticipant):  # it left on its own meanwhile
                await self.room.leave(participant_id, reason=reason)
            return
        self._roster.withdraw(member)

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
        for member in self._roster.connected():
            self._roster.deliver(member, message)

    # --- running ------------------------------------------------------------------------------------

    def _start(self) -> None:
        self._emit(EventType.SESSION_STARTED, agent=self.agent.name, room_id=self.id, name=self.name)
        if self.agent.coaching.enabled:
            ai = Participant(AI_COACH_ID, Role.COACH, Mode.WHISPER, name="AI coach")
            self._roster.members[ai.id] = Member(ai, connected=True)
            self._roles[ai.id] = ai.role
            self.room.join(ai, Discard())
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
                self._roster.send_staff({"type": "metrics", "metrics": self.metrics()})
                self._roster.forget_expired()
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
            self._roster.send_participants()
        elif event.type is EventType.ROOM_LEFT:
            left = event.payload(RoomLeft)
            self._left(left.participant_id, left.reason or "left")
        elif event.type is EventType.ROOM_MODE_CHANGED:
            changed = event.payload(RoomModeChanged)
            self._roster.mode_changed(changed.participant_id, changed.old, changed.new)
        elif event.type is EventType.ROOM_UTTERANCE:
            self._roster.utterance(event.payload(RoomUtterance), self._origin)

    def _left(self, participant_id: str, reason: str) -> None:
        member = self._roster.members.pop(participant_id, None)
        if member is None:
            return
        member.connected = False
        if member.close is not None:
            member.close(self.end_reason or reason)
        member.channel = member.close = None
        self._roster.send_participants()
        self._arm_idle()

    async def _on_hint(self, hint: Hint) -> None:
        self._roster.send_staff({"type": "hint", **hint_view(hint)})
        if not hint.whisper or AI_COACH_ID not in self._roster.members or self._roster.ending:
            return
        self._voice.say(hint)

    # --- idleness and background work ---------------------------------------------------------------

    def _arm_idle(self) -> None:
        if self._idle is None and not self._roster.ending and not self._roster.connected():
            self._idle = asyncio.get_running_loop().call_later(self.idle_s, self._idle_out)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_out(self) -> None:
        self._idle = None
        if not self._roster.connected():
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
        self._roster.ending = True
        self.end_reason = reason
        self._disarm_idle()
        for member in self._roster.connected():
            self._roster.deliver(member, {"type": "ended", "reason": reason})
        recording: RoomRecording | None = None
        try:
            recording = await self.room.close()  # everyone leaves (sockets close), last words transcribed
        except Exception:  # the call must still be closed on the books
            log.exception("closing a coached room failed", room_id=self.id)
        await self.coach.close()
        # Cancelled too: tasks that asked for this end (``end()`` shields the work itself).
        background = [t for t in (self._ticker, self._voice.task, self._clock, *self._tasks) if t is not None]
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        stored = await store_recording(self._platform, self.id, self.call.id, recording, self._roles)
        await store_summary(
            self._platform,
            room_id=self.id,
            call_id=self.call.id,
            name=self.name,
            roles=self._roles,
            recording=stored,
            summary=self.coach.summary,
        )
        self._emit(EventType.SESSION_ENDED, reason=reason)
        try:
            await self._platform.bus.flush()
        except Exception:  # the journal or Redis keeps what was emitted; the persister catches up
            log.exception("flushing a coached room's timeline failed", room_id=self.id)
        if self._on_ended is not None:
            self._on_ended(self)
        self._done.set()


async def _playbook(platform: Platform, call: CallSummary) -> KnowledgeIndex | None:
    """The agent's documents as the coach's playbook; a store failure leaves the coach without one."""
    if call.agent_id is None or call.org_id is None:
        return None
    try:
        return await platform.documents.index_for(call.org_id, call.agent_id)
    except Exception:
        log.exception("loading the playbook failed", call_id=call.id)
        return None


__all__ = [
    "AI_COACH_ID",
    "MAX_PARTICIPANTS",
    "CoachedRoom",
    "InvalidParticipant",
    "RoomUnavailable",
]
