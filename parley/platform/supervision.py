"""Supervisors on a live AI call: listen, whisper (guidance the agent hears as a note) or barge (the
supervisor takes the call over; the agent listens until nobody barges any more). No HTTP here:
``server/supervision.py`` turns requests and sockets into calls on these objects.

An AI call is one engine ``Session`` on one line. While anyone supervises it, a small ``Room`` runs
beside it, with the session's id as its id and its events on the session's timeline (so ``room.joined``,
``room.left``, ``room.mode_changed`` and what supervisors said are in the call's record). Its legs:

- ``caller`` (customer, speak): a copy of every frame the caller sends. Its ear is the line back to the
  caller *below* the agent's tap: while a supervisor barges, what the room mixes for the caller (the
  barging supervisors; the agent is silent, it was handed over) goes down the line, and into the call's
  recording as what the caller heard; otherwise it goes nowhere. Never into the agent's tap, so a
  supervisor never hears their own voice echoed back.
- ``agent`` (agent, speak): a copy of every frame the agent sends (``SupervisionTap``). What the line
  flushes (a barge-in) is forgotten by the room too: nobody hears what the caller never heard.
- each supervisor (coach): comes in listening, hears the caller, the agent and whoever barges. Only
  supervisors' legs are transcribed: an utterance made in ``whisper`` becomes a whispered note to the
  agent (guidance for its next reply, which the caller never hears), one made in ``barge`` a note of what
  was said to the caller. While anyone barges the session is handed over (``Session.hand_over``).

    supervision = SupervisedCall.open(session, tap, timeline, call_id=call.id)
    participant, token = supervision.invite(Mode.LISTEN, "Dana")   # a single-use join token
    leg = supervision.connect(token, sink, channel, close)         # the supervisor's socket joins
    supervision.set_mode(participant.id, Mode.BARGE); await supervision.close("ended")

The room closes when the last supervisor leaves (or every invitation expired), or when the call ends.
Every leg then leaves with the reason it closed for (``room.left``, reason ``call_ended``,
``no_supervisors`` …). Once the session has ended, whatever the room still records (those ``room.left``,
a supervisor's last words) is stamped no later than the session's end: ``server/live.py`` holds the
call's ``session.ended`` back until the room has closed, so the timeline stays in time order with the
call's end last. A call that ends while a supervisor barges is not handed back to the agent
(no ``handover.ended``): it never speaks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from parley.audio.frame import AudioFrame
from parley.engine.conversation import ConversationEngine
from parley.engine.event_payloads import (
    AgentText,
    HandoverEnded,
    HandoverStarted,
    RoomJoined,
    RoomLeft,
    RoomModeChanged,
    RoomUtterance,
    SupervisorNote,
    TranscriptFinal,
)
from parley.engine.events import Event, EventType, Timeline, now
from parley.engine.state import SessionState
from parley.engine.transport import AudioOutput
from parley.platform.calls import hash_token
from parley.platform.room_roster import Channel, Closer, JoinRefused, participant_view
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
    UnknownParticipant,
    Utterance,
    per_leg_transcription,
)
from parley.rooms.model import check_participant
from parley.rooms.tap import SupervisionTap, TapListener

log = structlog.get_logger("parley.platform.supervision")

MAX_SUPERVISORS = 4
TOKEN_TTL_S = 600.0
"""A supervisor's join token is good for ten minutes, once."""
MAX_WHISPER_CHARS = 500
"""A typed whisper is one line of guidance, not a document."""
SUPERVISOR_MODES = (Mode.LISTEN, Mode.WHISPER, Mode.BARGE)
CALLER_ID = "caller"
AGENT_ID = "agent"
MODE_HISTORY = 64
"""Mode changes kept per supervisor, to tell which mode an utterance was spoken in."""


class NotJoined(Exception):
    """A supervisor invited but not on the call yet (its socket never connected) tried to act on it."""


class SupervisionUnavailable(Exception):
    """This call cannot be supervised now: it has ended, or its recogniser cannot hear a room."""


class _Nowhere:
    """The agent's ear in the room: the agent hears the caller on its own line, not here."""

    sample_rate = ROOM_RATE

    async def write(self, frame: AudioFrame) -> None:
        return None

    async def clear(self) -> None:
        return None


class _BargeSink:
    """The caller's ear in the room: down the line while a supervisor barges, otherwise nowhere."""

    def __init__(self, supervision: SupervisedCall, line: AudioOutput) -> None:
        self._supervision = supervision
        self._line = line
        self.sample_rate = line.sample_rate

    async def write(self, frame: AudioFrame) -> None:
        if self._supervision.barging:
            await self._line.write(frame)

    async def clear(self) -> None:
        return None


@dataclass(slots=True)
class _Supervisor:
    participant: Participant
    token_hash: str | None
    expires_at: float
    expiry: asyncio.TimerHandle | None = None
    channel: Channel | None = None
    close: Closer | None = None
    connected: bool = False


class SupervisedCall:
    """The supervisors' room beside one live AI session; made by ``open``, ended by ``close``."""

    def __init__(
        self,
        session: ConversationEngine,
        tap: SupervisionTap,
        timeline: Timeline,
        *,
        call_id: str | None = None,
        record: Callable[[Event], None] | None = None,
        max_supervisors: int = MAX_SUPERVISORS,
        token_ttl_s: float = TOKEN_TTL_S,
        on_join: Callable[[Participant], None] | None = None,
    ) -> None:
        """``timeline`` is the session's: the room's events go on it. ``record`` takes the room's errors
        instead (the call's record without the caller's client, which must not learn of supervisors).
        ``on_join`` is told of every supervisor who joins (the server's metrics)."""
        recognizer = session.stack.recognizer
        if recognizer.sample_rate != ROOM_RATE:
            raise SupervisionUnavailable(
                f"this call's recogniser runs at {recognizer.sample_rate} Hz; "
                f"supervision needs {ROOM_RATE} Hz"
            )
        self.id = session.id
        self.call_id = call_id
        self.max_supervisors = max_supervisors
        self.token_ttl_s = token_ttl_s
        self.barging = False
        """A supervisor barges: the room's mix for the caller goes down the line."""
        self.end_reason: str | None = None
        self._session = session
        self._tap = tap
        self._timeline = timeline
        self._record = record
        self._on_join = on_join
        self._members: dict[str, _Supervisor] = {}
        self._tokens: dict[str, str] = {}
        """sha256 of an unused join token -> supervisor id."""
        self._modes: dict[str, list[tuple[float, Mode]]] = {}
        """Each supervisor's modes over time (room clock), kept until the room closes."""
        self._took_over = False
        self._ending = False
        self._session_ended_at: float | None = None
        """When the session ended (its ``session.ended``): the latest time the room's events may carry."""
        self._closing: asyncio.Future[None] | None = None
        self._done = asyncio.Event()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._clock: asyncio.Task[None] | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.room = Room(
            session.id,
            self._room_event,
            transcriber_factory=per_leg_transcription(
                recognizer,
                session.stack.vad_factory,
                endpointing=session.agent.endpointing,
                on_utterance=self._on_utterance,
                roles=(Role.COACH,),
            ),
            max_participants=max_supervisors + 2,
            record=False,
        )

    @classmethod
    def open(
        cls, session: ConversationEngine, tap: SupervisionTap, timeline: Timeline, **options: Any
    ) -> SupervisedCall:
        """Set the room beside a live session and start its clock; from now on the tap feeds it.
        Raises ``SupervisionUnavailable`` when the session has ended or already has supervisors."""
        if session.state is SessionState.ENDED:
            raise SupervisionUnavailable(f"call session {session.id} has ended")
        if tap.listener is not None:
            raise SupervisionUnavailable(f"call session {session.id} is already supervised")
        supervision = cls(session, tap, timeline, **options)
        supervision._start()
        return supervision

    # --- who is in ----------------------------------------------------------------------------------

    @property
    def ending(self) -> bool:
        return self._ending

    def supervisors(self) -> list[dict[str, Any]]:
        """Everyone invited or connected, in the order they were invited."""
        return [participant_view(m.participant, m.connected) for m in self._members.values()]

    def invite(self, mode: Mode = Mode.LISTEN, name: str = "") -> tuple[Participant, str]:
        """A supervisor's id and single-use join token (good for ``token_ttl_s``). Raises ``RoomClosed``
        once the room is closing, ``RoomFull`` at ``max_supervisors`` (invited or connected), and
        ``InvalidParticipant`` for a mode that is not a supervisor's or a name that is too long."""
        if self._ending:
            raise RoomClosed(f"the supervision of call session {self.id} is closing")
        _check_mode(mode)
        self._forget_expired()
        if len(self._members) >= self.max_supervisors:
            raise RoomFull(f"this call already has its maximum of {self.max_supervisors} supervisors")
        participant = Participant(f"s_{secrets.token_hex(5)}", Role.COACH, mode, name)
        check_participant(participant)
        token = secrets.token_urlsafe(32)
        digest = hash_token(token)
        member = _Supervisor(participant, digest, now() + self.token_ttl_s)
        member.expiry = asyncio.get_running_loop().call_later(self.token_ttl_s + 0.05, self._expired)
        self._members[participant.id] = member
        self._tokens[digest] = participant.id
        self._send_supervisors()
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
        """Spend a join token: its supervisor joins the room with this ear and message channel, which
        first gets ``ready`` (``hello`` merged in). Raises ``JoinRefused`` or ``RoomFull``."""
        member = self._invited(token)
        if member is None:
            raise JoinRefused("this supervisor token is unknown or was already used; ask for a new one")
        assert member.token_hash is not None
        del self._tokens[member.token_hash]
        member.token_hash = None
        if member.expiry is not None:
            member.expiry.cancel()
            member.expiry = None
        participant = member.participant
        if now() > member.expires_at:
            self._members.pop(participant.id, None)
            self._send_supervisors()
            self._close_if_empty()
            raise JoinRefused(
                f"this supervisor token expired (tokens live {self.token_ttl_s:g} s); ask for a new one"
            )
        member.channel, member.close, member.connected = channel, close, True
        channel(
            {
                "type": "ready",
                "call": {"id": self.call_id, "session_id": self.id, "agent": self._session.agent.name},
                "participant": participant_view(participant, True),
                **(hello or {}),
            }
        )
        self._modes[participant.id] = [(now(), participant.mode)]
        try:
            leg = self.room.join(participant, sink)  # room.joined: a barging supervisor takes over
        except (RoomClosed, RoomFull):
            member.channel = member.close = None
            member.connected = False
            self._members.pop(participant.id, None)
            raise
        if self._on_join is not None:
            self._on_join(participant)
        return leg

    def set_mode(self, participant_id: str, mode: Mode) -> dict[str, Any]:
        """Listen, whisper or barge, live. Raises ``UnknownParticipant`` or ``InvalidParticipant``."""
        _check_mode(mode)
        member = self._member(participant_id)
        if member.connected:
            self.room.set_mode(participant_id, mode)  # room.mode_changed follows
        elif member.participant.mode is not mode:
            member.participant = dataclasses.replace(member.participant, mode=mode)
            self._send_supervisors()
        return participant_view(member.participant, member.connected)

    async def remove(self, participant_id: str, reason: str = "removed") -> None:
        """A supervisor leaves (its socket is closed), or an invitation is withdrawn."""
        member = self._member(participant_id)
        if member.connected:
            with contextlib.suppress(UnknownParticipant):  # it left on its own meanwhile
                await self.room.leave(participant_id, reason=reason)
            return
        self._withdraw(member)
        self._send_supervisors()
        self._close_if_empty()

    def whisper(self, participant_id: str, text: str) -> None:
        """Typed guidance from a supervisor: the agent hears it as a note from its next reply on.

        Only from a supervisor who joined (connected its socket): an invitation is a right to join, not
        to steer the call unheard; until then, ``NotJoined``."""
        member = self._member(participant_id)
        if self._ending:
            raise RoomClosed(f"the supervision of call session {self.id} is closing")
        if not member.connected:
            raise NotJoined(
                f"supervisor {participant_id} has not joined this call: join first (connect the "
                "invitation's ws_url), then whisper"
            )
        if len(text) > MAX_WHISPER_CHARS:
            raise ValueError(f"a whisper is at most {MAX_WHISPER_CHARS} characters")
        self._session.add_note(text, kind="whisper", by=participant_id)

    async def close(self, reason: str = "ended") -> None:
        """Everyone leaves (told ``ended``, sockets closed), the agent has the call back, the tap stops.
        Safe to call more than once, from anywhere."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close(reason))
        await asyncio.shield(self._closing)

    async def wait_closed(self) -> None:
        await self._done.wait()

    # --- the tap's side -----------------------------------------------------------------------------

    def caller(self, frame: AudioFrame) -> None:
        with contextlib.suppress(UnknownParticipant):
            self.room.leg(CALLER_ID).feed(frame)

    def agent(self, frame: AudioFrame) -> None:
        with contextlib.suppress(UnknownParticipant):
            self.room.leg(AGENT_ID).feed(frame)

    def agent_cleared(self) -> None:
        with contextlib.suppress(UnknownParticipant):
            self.room.leg(AGENT_ID).discard_waiting()

    # --- running ------------------------------------------------------------------------------------

    def _start(self) -> None:
        self.room.join(
            Participant(CALLER_ID, Role.CUSTOMER, Mode.SPEAK, "caller"), _BargeSink(self, self._tap.inner)
        )
        self.room.join(Participant(AGENT_ID, Role.AGENT, Mode.SPEAK, "agent"), _Nowhere())
        self._unsubscribe = self._timeline.subscribe(self._on_call_event)
        self._clock = asyncio.get_running_loop().create_task(self.room.run(), name=f"supervision-{self.id}")
        self._clock.add_done_callback(self._clock_stopped)
        self._tap.listener = self

    def _clock_stopped(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        log.error("a supervision room's clock failed", session_id=self.id, error=repr(task.exception()))
        self._spawn(self.close("error"))

    async def _close(self, reason: str) -> None:
        self._ending = True
        self.end_reason = reason
        for member in self._connected():
            _deliver(member, {"type": "ended", "reason": reason})
        for member in list(self._members.values()):
            if not member.connected:
                self._withdraw(member)
        try:
            # Everyone leaves saying why (sockets close), their last words transcribed, in parallel; then
            # the clock stops (``Room.close`` alone would say ``room_closed``, whatever the reason).
            await asyncio.gather(*(self._leave(p.id, reason) for p in self.room.participants))
            await self.room.close()
        except Exception:
            log.exception("closing a supervision room failed", session_id=self.id)
        if self._clock is not None:
            await asyncio.gather(self._clock, return_exceptions=True)
        if self._took_over:
            self._took_over = False
            if not self._session_over:
                self._session.take_back()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._tap.listener is self:
            self._tap.listener = None
        self._done.set()

    async def _leave(self, participant_id: str, reason: str) -> None:
        with contextlib.suppress(UnknownParticipant):  # it left on its own meanwhile
            await self.room.leave(participant_id, reason=reason)

    @property
    def _session_over(self) -> bool:
        return self._session_ended_at is not None or self._session.state is SessionState.ENDED

    def _close_if_empty(self) -> None:
        if not self._members and not self._ending:
            self._spawn(self.close("no_supervisors"))

    def _spawn(self, work: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- what the room says -------------------------------------------------------------------------

    def _room_event(self, event: Event) -> None:
        ended_at = self._session_ended_at
        if ended_at is not None and event.t > ended_at:  # recorded before the held session.ended
            event = dataclasses.replace(event, t=ended_at)
        if event.type is EventType.ERROR:  # in the record, but never on the caller's own channel
            log.warning("supervision room error", session_id=self.id, **event.data)
            if self._record is not None:
                self._record(event)
            return
        self._timeline.emit(event)
        if event.type is EventType.ROOM_JOINED:
            if event.payload(RoomJoined).participant_id in self._members:
                self._sync_handover()
                self._send_supervisors()
        elif event.type is EventType.ROOM_LEFT:
            left = event.payload(RoomLeft)
            self._left(left.participant_id, left.reason or "left")
        elif event.type is EventType.ROOM_MODE_CHANGED:
            changed = event.payload(RoomModeChanged)
            self._mode_changed(changed.participant_id, changed.old, changed.new)
        elif event.type is EventType.ROOM_UTTERANCE:
            said = event.payload(RoomUtterance)
            member = self._members.get(said.participant_id)
            self._send(
                {
                    "type": "utterance",
                    "participant_id": said.participant_id,
                    "role": said.role,
                    "name": member.participant.name if member is not None else "",
                    "text": said.text,
                }
            )

    def _left(self, participant_id: str, reason: str) -> None:
        member = self._members.pop(participant_id, None)
        if member is None:
            return
        member.connected = False
        if member.close is not None:
            member.close(self.end_reason or reason)
        member.channel = member.close = None
        self._sync_handover()
        self._send_supervisors()
        self._close_if_empty()

    def _mode_changed(self, participant_id: str, old: str, new: str) -> None:
        member = self._members.get(participant_id)
        if member is None:
            return
        with contextlib.suppress(UnknownParticipant):
            member.participant = self.room.leg(participant_id).participant
        history = self._modes.setdefault(participant_id, [])
        history.append((now(), member.participant.mode))
        del history[:-MODE_HISTORY]
        self._sync_handover()
        self._send({"type": "mode", "participant_id": participant_id, "old": old, "new": new})
        self._send_supervisors()

    def _sync_handover(self) -> None:
        """Someone barges: the agent is handed over (it stops and listens); nobody any more: it has the
        call back."""
        barging = [
            m.participant.id
            for m in self._members.values()
            if m.connected and m.participant.mode is Mode.BARGE
        ]
        self.barging = bool(barging)
        if barging and not self._session.handed_over:
            self._session.hand_over(barging[0])
            self._took_over = self._session.handed_over
        elif not barging and self._took_over and not self._session_over:
            self._took_over = False
            self._session.take_back()

    def _on_utterance(self, utterance: Utterance) -> None:
        """What a supervisor said, for the agent: in whisper a note it alone hears, in barge what the
        caller was told. The mode is the one the words began in; in listen nobody heard them."""
        mode = self._mode_at(utterance.participant_id, utterance.start)
        if mode is Mode.WHISPER:
            self._session.add_note(utterance.text, kind="whisper", by=utterance.participant_id)
        elif mode is Mode.BARGE:
            self._session.add_note(utterance.text, kind="said", by=utterance.participant_id)

    def _mode_at(self, participant_id: str, t: float) -> Mode:
        history = self._modes.get(participant_id) or [(t, Mode.LISTEN)]
        mode = history[0][1]
        for since, then in history:
            if since > t:
                break
            mode = then
        return mode

    def _on_call_event(self, event: Event) -> None:
        """The call's own words and the agent's notes, for the supervisors' pages."""
        kind = event.type
        if kind is EventType.SESSION_ENDED:
            self._session_ended_at = event.t
        elif kind is EventType.TRANSCRIPT_FINAL:
            self._send(
                {"type": "transcript", "role": "customer", "text": event.payload(TranscriptFinal).text}
            )
        elif kind is EventType.AGENT_TEXT:
            said = event.payload(AgentText)
            self._send({"type": "transcript", "role": "agent", "text": said.text, "reply_id": said.reply_id})
        elif kind is EventType.SUPERVISOR_NOTE:
            note = event.payload(SupervisorNote)
            self._send({"type": "note", "kind": note.kind, "by": note.by, "text": note.text})
        elif kind is EventType.HANDOVER_STARTED:
            to = event.payload(HandoverStarted).to
            self._send({"type": "handover", "status": "started", "participant_id": to})
        elif kind is EventType.HANDOVER_ENDED:
            by = event.payload(HandoverEnded).by
            self._send({"type": "handover", "status": "ended", "participant_id": by})

    # --- channels and invitations -------------------------------------------------------------------

    def _connected(self) -> list[_Supervisor]:
        return [m for m in self._members.values() if m.connected and m.channel is not None]

    def _send(self, message: dict[str, Any]) -> None:
        for member in self._connected():
            _deliver(member, message)

    def _send_supervisors(self) -> None:
        if not self._ending:
            self._send({"type": "participants", "participants": self.supervisors()})

    def _member(self, participant_id: str) -> _Supervisor:
        member = self._members.get(participant_id)
        if member is None:
            raise UnknownParticipant(f"no supervisor {participant_id!r} on this call")
        return member

    def _invited(self, token: str) -> _Supervisor | None:
        if self._ending or not token:
            return None
        participant_id = self._tokens.get(hash_token(token))
        member = self._members.get(participant_id) if participant_id is not None else None
        return member if member is not None and member.token_hash is not None else None

    def _withdraw(self, member: _Supervisor) -> None:
        self._members.pop(member.participant.id, None)
        if member.token_hash is not None:
            self._tokens.pop(member.token_hash, None)
            member.token_hash = None
        if member.expiry is not None:
            member.expiry.cancel()
            member.expiry = None

    def _forget_expired(self) -> None:
        at = now()
        for member in list(self._members.values()):
            if not member.connected and member.token_hash is not None and at > member.expires_at:
                self._withdraw(member)

    def _expired(self) -> None:
        """An invitation's time is up: forgotten, and the room closes if nobody else is in or invited."""
        before = len(self._members)
        self._forget_expired()
        if len(self._members) != before:
            self._send_supervisors()
            self._close_if_empty()


def _check_mode(mode: Mode) -> None:
    if mode not in SUPERVISOR_MODES:
        raise InvalidParticipant(
            f"a supervisor listens, whispers or barges; {str(mode)!r} is not one of those"
        )


def _deliver(member: _Supervisor, message: dict[str, Any]) -> None:
    if member.channel is None:
        return
    try:
        member.channel(message)
    except Exception:  # one page's broken channel must not silence the others
        log.exception("a supervisor's channel failed", participant_id=member.participant.id)


__all__ = [
    "MAX_SUPERVISORS",
    "MAX_WHISPER_CHARS",
    "SUPERVISOR_MODES",
    "NotJoined",
    "SupervisedCall",
    "SupervisionTap",
    "SupervisionUnavailable",
    "TapListener",
]
