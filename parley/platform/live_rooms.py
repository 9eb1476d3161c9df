"""The coached rooms this process runs, per organization and within bounds: opening one (a slot reserved
while its models load), finding it, draining them all at shutdown, and the books of the phone legs Parley
dials into them (``metadata.phone_legs``: CallSid, number, how the call ended, the seconds billed; their
minutes are the call's telephony). Apart from ``coached_room`` because it governs many rooms, not one call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from parley.engine.agent import AgentConfig
from parley.engine.events import Event
from parley.platform.agents import NotFound
from parley.platform.coached_room import TOKEN_TTL_S, CoachedRoom, RoomUnavailable, StackFor
from parley.platform.room_record import locked_call, phone_legs_of
from parley.platform.usage import PHONE_LEGS, ROOM_TRANSPORT, finish_call, phone_leg_minutes
from parley.rooms import Participant

if TYPE_CHECKING:
    from parley.platform.runtime import Platform

log = structlog.get_logger("parley.platform.live_rooms")

LEG_ENDED = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
"""Twilio's final statuses of a dialed call; only ``completed`` was answered (and costs minutes)."""


class RoomNotFound(NotFound):
    """No such live room in this organization (another organization's room is not found either)."""


class TooManyRooms(Exception):
    """The process or the organization already runs as many rooms as allowed."""


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
            row = await locked_call(session, call_id)
            if row is None:
                log.warning("a dialed phone leg's room call is gone", call_id=call_id, call_sid=call_sid)
                return
            legs = phone_legs_of(row)
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
            row = await locked_call(session, call_id)
            if row is None or row.transport != ROOM_TRANSPORT:
                log.warning(
                    "a phone leg's end names no coached room's call", call_id=call_id, call_sid=call_sid
                )
                return False
            legs = phone_legs_of(row)
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


__all__ = ["LEG_ENDED", "LiveRooms", "RoomNotFound", "TooManyRooms"]
