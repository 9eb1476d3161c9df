"""Who is in a coached room and what each of them reads. A participant is invited (a single-use join
token), then connects with a message channel (a callback the server turns into WebSocket JSON). Reps and
coaches read everything (transcripts, hint cards, metrics, who is listening or whispering); a customer's
channel never carries coaching: no hints, no metrics, no words it could not hear, no participant it cannot
hear. Apart from ``coached_room`` so that this rule, which a customer's privacy rests on, is in one place.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from parley.analysis.coach import Hint
from parley.engine.event_payloads import RoomUtterance
from parley.engine.events import now
from parley.platform.calls import hash_token
from parley.rooms import Participant, Role, Room, UnknownParticipant, audible

log = structlog.get_logger("parley.platform.room_roster")

STAFF = frozenset({Role.REP, Role.COACH})
"""Who sees coaching (hints, metrics, every transcript line): reps, coaches and supervisors."""
Channel = Callable[[dict[str, Any]], None]
"""A participant's message channel: never blocks (the server queues for the socket)."""
Closer = Callable[[str], None]
"""Tells the participant's connection to close (after what is queued), with the reason."""


class JoinRefused(PermissionError):
    """A join token that is unknown, used, expired, or for a room that has ended."""


@dataclass(slots=True)
class Member:
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


class Roster:
    """The members of ``room`` (invited or connected, in the order they were added) and their channels."""

    def __init__(self, room: Room) -> None:
        self._room = room
        self.members: dict[str, Member] = {}
        self._tokens: dict[str, str] = {}
        """sha256 of an unused join token -> participant id."""
        self.ending = False
        """Set as the room ends: no token lets anyone join and no participants list is sent any more."""

    # --- invitations ----------------------------------------------------------------------------------

    def invite(self, participant: Participant, ttl_s: float) -> str:
        """A single-use join token for ``participant``, good for ``ttl_s``; everyone sees the newcomer."""
        token = secrets.token_urlsafe(32)
        digest = hash_token(token)
        self.members[participant.id] = Member(participant, digest, now() + ttl_s)
        self._tokens[digest] = participant.id
        self.send_participants()
        return token

    def check(self, token: str) -> bool:
        """Whether ``token`` would let someone join now (it is not spent by asking)."""
        member = self._invited(token)
        return member is not None and now() <= member.expires_at

    def spend(self, token: str, ttl_s: float) -> Member:
        """The member ``token`` invited; the token is used up. Raises ``JoinRefused`` (unknown, used or
        expired token, or the room ended)."""
        member = self._invited(token)
        if member is None:
            raise JoinRefused("this room token is unknown or was already used; ask for a new one")
        assert member.token_hash is not None
        del self._tokens[member.token_hash]
        member.token_hash = None
        if now() > member.expires_at:
            self.members.pop(member.participant.id, None)
            self.send_participants()
            raise JoinRefused(f"this room token expired (tokens live {ttl_s:g} s); ask for a new one")
        return member

    def withdraw(self, member: Member) -> None:
        """An invitation withdrawn: its token lets no one in any more."""
        self.members.pop(member.participant.id, None)
        if member.token_hash is not None:
            self._tokens.pop(member.token_hash, None)
        self.send_participants()

    def member(self, participant_id: str) -> Member:
        member = self.members.get(participant_id)
        if member is None:
            raise UnknownParticipant(f"no participant {participant_id!r} in room {self._room.id}")
        return member

    def _invited(self, token: str) -> Member | None:
        if self.ending or not token:
            return None
        participant_id = self._tokens.get(hash_token(token))
        member = self.members.get(participant_id) if participant_id is not None else None
        return member if member is not None and member.token_hash is not None else None

    def forget_expired(self) -> None:
        at = now()
        expired = [
            m
            for m in self.members.values()
            if not m.connected and m.token_hash is not None and at > m.expires_at
        ]
        for member in expired:
            self.members.pop(member.participant.id, None)
            if member.token_hash is not None:
                self._tokens.pop(member.token_hash, None)
        if expired:
            self.send_participants()

    # --- channels -------------------------------------------------------------------------------------

    def views(self) -> list[dict[str, Any]]:
        """Everyone invited or connected, in the order they were added."""
        return [participant_view(m.participant, m.connected) for m in self.members.values()]

    def connected(self) -> list[Member]:
        return [m for m in self.members.values() if m.human]

    def deliver(self, member: Member, message: dict[str, Any]) -> None:
        if member.channel is None:
            return
        try:
            member.channel(message)
        except Exception:  # one page's broken channel must not silence the others
            log.exception(
                "a room channel failed", room_id=self._room.id, participant_id=member.participant.id
            )

    def send_staff(self, message: dict[str, Any]) -> None:
        """Hints and metrics: reps and coaches only, never a customer."""
        for member in self.connected():
            if member.participant.role in STAFF:
                self.deliver(member, message)

    def send_participants(self) -> None:
        if self.ending:
            return
        everyone = [(m.participant, m.connected) for m in self.members.values()]
        for member in self.connected():
            listener = member.participant
            if listener.role in STAFF:
                shown = everyone
            else:  # a customer sees itself and who it can hear: never a listening or whispering coach
                shown = [(p, c) for p, c in everyone if p.id == listener.id or (c and audible(p, listener))]
            self.deliver(
                member, {"type": "participants", "participants": [participant_view(p, c) for p, c in shown]}
            )

    def mode_changed(self, participant_id: str, old: str, new: str) -> None:
        """A participant's new mode: to staff and to the participant itself, then everyone's list."""
        member = self.members.get(participant_id)
        if member is None:
            return
        with contextlib.suppress(UnknownParticipant):
            member.participant = self._room.leg(participant_id).participant
        message = {"type": "mode", "participant_id": participant_id, "old": old, "new": new}
        for listener in self.connected():
            if listener.participant.role in STAFF or listener.participant.id == participant_id:
                self.deliver(listener, message)
        self.send_participants()

    def utterance(self, said: RoomUtterance, origin: float) -> None:
        """A final line to everyone who may read it. A transcript is final after its words were mixed,
        often after the speaker's mode changed or it left: who heard the words is the room's record of
        the modes it spoke them in, not its mode (or absence) now."""
        speaker_id = said.participant_id
        speaker = self._room.known(speaker_id)
        message = {
            "type": "utterance",
            "participant_id": speaker_id,
            "role": said.role,
            "name": speaker.name if speaker is not None else "",
            "text": said.text,
            "start_ms": round((said.start - origin) * 1000),
            "end_ms": round((said.end - origin) * 1000),
        }
        for member in self.connected():
            if self._may_read(member.participant, said):
                self.deliver(member, message)

    def _may_read(self, listener: Participant, said: RoomUtterance) -> bool:
        """Staff read every line; anyone reads their own; a customer reads only what it heard, all of it
        (a line spoken partly while muted or whispering is not the customer's)."""
        if listener.role in STAFF or listener.id == said.participant_id:
            return True
        return self._room.heard(said.participant_id, listener, said.start, said.end)
