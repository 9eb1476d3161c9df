"""Who is in a room and who hears whom: roles, modes, the one audibility rule, and the room's errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from parley.engine.events import EventType

ROOM_RATE = 16000
"""Inside a room everything is 16 kHz mono PCM16, the rate the recognisers and VADs want."""
TICK_S = 0.02
TICK_SAMPLES = 320
"""One tick of the room clock: 20 ms at ``ROOM_RATE``."""

PARTICIPANT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Participant ids are safe in file names (the recording writes ``leg-<id>.wav``)."""
MAX_NAME_CHARS = 120


class Role(StrEnum):
    CUSTOMER = "customer"
    REP = "rep"
    COACH = "coach"
    AGENT = "agent"
    """An AI agent on the call (its leg is an in-process session)."""


class Mode(StrEnum):
    SPEAK = "speak"
    """A normal party: hears everyone, heard by everyone."""
    LISTEN = "listen"
    """Hears everyone, heard by nobody."""
    WHISPER = "whisper"
    """Hears everyone, heard by the rep(s) only."""
    BARGE = "barge"
    """A coach who joins the conversation: heard by everyone."""


def default_mode(role: Role) -> Mode:
    """A coach comes in listening; everyone else comes in as a normal party."""
    return Mode.LISTEN if role is Role.COACH else Mode.SPEAK


@dataclass(frozen=True, slots=True)
class Participant:
    """One leg's person (or agent). Frozen: a live mode change goes through ``Room.set_mode``, which
    records it on the timeline."""

    id: str
    role: Role
    mode: Mode
    name: str = ""


def audible(speaker: Participant, listener: Participant) -> bool:
    """Whether ``listener`` hears ``speaker``: the whole mixing policy.

    ============  ========  =====  =====  =====
    speaker mode  customer  rep    coach  agent   (listener role)
    ============  ========  =====  =====  =====
    speak         yes       yes    yes    yes
    barge         yes       yes    yes    yes
    whisper       no        yes    no     no
    listen        no        no     no     no
    ============  ========  =====  =====  =====

    Nobody hears themselves (same id), whatever their mode.
    """
    if speaker.id == listener.id:
        return False
    if speaker.mode is Mode.LISTEN:
        return False
    if speaker.mode is Mode.WHISPER:
        return listener.role is Role.REP
    return True


@dataclass(frozen=True, slots=True)
class Utterance:
    """One participant's finished utterance; ``start``/``end`` are monotonic seconds on the room clock."""

    participant_id: str
    role: Role
    text: str
    start: float
    end: float


class Emit(Protocol):
    """How room parts put an event on the room's timeline (the room stamps it and adds its id)."""

    def __call__(self, type_: EventType, /, **data: Any) -> None: ...


class RoomError(Exception):
    """An expected refusal by a room (the caller asked for something the room cannot do)."""


class ParticipantExists(RoomError):
    """A participant with that id is already in the room."""


class UnknownParticipant(RoomError):
    """No participant with that id is in the room."""


class RoomFull(RoomError):
    """The room already holds ``max_participants`` legs."""


class InvalidParticipant(RoomError, ValueError):
    """The id is not ``[A-Za-z0-9_-]{1,64}`` or the name is too long."""


class RoomClosed(RoomError):
    """The room has been closed; nobody can join it any more."""


def check_participant(participant: Participant) -> None:
    """Tenant-supplied ids end up in file names and names on screens: both are bounded here."""
    if not PARTICIPANT_ID.fullmatch(participant.id):
        raise InvalidParticipant(f"participant id must match [A-Za-z0-9_-]{{1,64}}, got {participant.id!r}")
    if len(participant.name) > MAX_NAME_CHARS:
        raise InvalidParticipant(f"participant name is longer than {MAX_NAME_CHARS} characters")
    if not isinstance(participant.role, Role) or not isinstance(participant.mode, Mode):
        raise InvalidParticipant("participant role and mode must be a Role and a Mode")
