"""Calls, their status lifecycle, timeline events, transcript turns and recordings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.lifecycle import ACTIVE, CallStatus, Decision, decide
from parley.store.models import Call, CallEvent, Recording, TranscriptTurn
from parley.store.queries import insert_ignore, page_newest_first, upsert
from parley.store.types import new_id, utcnow
from parley.store.webhooks import enqueue_call_status

CARRIER_END_WINDOW = timedelta(seconds=2)
"""Twilio stamps its callbacks to the second: a call it says ended at 12:00:05 ended within that second,
and the session hears of it a moment later (the media stream's stop crosses the network), so by 12:00:07."""


def _whole_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


@dataclass(frozen=True, slots=True)
class CallFilters:
    agent_id: str | None = None
    statuses: Sequence[str] = field(default_factory=tuple)
    direction: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class CallRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self,
        org_id: str,
        *,
        direction: str,
        transport: str,
        agent_id: str | None = None,
        agent_version_id: str | None = None,
        session_id: str | None = None,
        from_number: str | None = None,
        to_number: str | None = None,
        call_id: str | None = None,
        access: str | None = None,
        client_ip: str | None = None,
        connect_token_hash: str | None = None,
        provider_call_id: str | None = None,
        job_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Call:
        ident = call_id or new_id("call")
        now = utcnow()
        call = Call(
            id=ident,
            org_id=org_id,
            agent_id=agent_id,
            agent_version_id=agent_version_id,
            session_id=session_id or ident,
            direction=direction,
            transport=transport,
            from_number=from_number,
            to_number=to_number,
            status=CallStatus.QUEUED.value,
            created_at=now,
            updated_at=now,
            access=access,
            client_ip=client_ip,
            connect_token_hash=connect_token_hash,
            provider_call_id=provider_call_id,
            job_id=job_id,
            metadata_=metadata or None,
        )
        self.session.add(call)
        await self.session.flush()
        return call

    async def get(self, call_id: str, org_id: str | None = None) -> Call | None:
        call = await self.session.get(Call, call_id)
        if call is None or (org_id is not None and call.org_id != org_id):
            return None
        return call

    async def by_provider_id(self, provider_call_id: str) -> Call | None:
        """The call the carrier knows by this id (Twilio's CallSid)."""
        return await self.session.scalar(select(Call).where(Call.provider_call_id == provider_call_id))

    async def consume_token(self, token_hash: str) -> Call | None:
        """The queued call this token connects, with the token spent: of two clients racing with the same
        token exactly one gets the call (the conditional UPDATE decides)."""
        call = await self.session.scalar(select(Call).where(Call.connect_token_hash == token_hash))
        if call is None:
            return None
        spent = await self.session.execute(
            update(Call)
            .where(Call.id == call.id, Call.connect_token_hash == token_hash)
            .values(connect_token_hash=None)
        )
        if getattr(spent, "rowcount", 0) != 1:
            return None
        await self.session.refresh(call)
        return call

    async def by_sessions(self, session_ids: Sequence[str]) -> dict[str, Call]:
        result = await self.session.scalars(select(Call).where(Call.session_id.in_(list(session_ids))))
        return {call.session_id: call for call in result.all()}

    async def set_status(
        self, call: Call, status: CallStatus | str, *, reason: str | None = None, at: datetime | None = None
    ) -> Decision:
        """Apply a status update under a row lock; duplicates and late updates change nothing.

        SQLite takes no row lock: two writers (the carrier's callback, the session's end) may both read the
        call in progress. The move itself is conditional on the status read, so the one that comes second
        finds the call moved, and is decided again on what the first wrote (a duplicate, not a second end
        that overwrites the first's time)."""
        new = CallStatus(status)
        for _ in range(len(CallStatus)):  # each lost race finds the call further along its lifecycle
            locked = await self.session.scalar(
                select(Call)
                .where(Call.id == call.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
            assert locked is not None
            decision = decide(locked.status, new)
            if decision is not Decision.APPLY or await self._move(locked, new):
                break
        else:
            raise RuntimeError(f"call {call.id} kept changing status while {new} was applied")
        if decision is Decision.DUPLICATE and new.terminal:
            # Two witnesses of one hang-up (the carrier's callback, the session's end): whichever lands
            # first sets the time; a reason only the other knows still fills the gap. The carrier's time
            # is to the second: a later witness of that same moment (the session's end, to the
            # microsecond) is when it really ended, so the call is not cut short by up to a second.
            if reason and locked.end_reason is None:
                locked.end_reason = reason
            ended = locked.ended_at
            if (
                at is not None
                and ended is not None
                and ended < at < _whole_second(ended) + CARRIER_END_WINDOW
            ):
                locked.ended_at = at
                locked.updated_at = utcnow()
        if decision is not Decision.APPLY:
            return decision
        when = at or utcnow()
        locked.status = new.value
        if new is CallStatus.RINGING:
            locked.ringing_at = when
        elif new is CallStatus.IN_PROGRESS:
            locked.started_at = when
        elif new.terminal:
            locked.ended_at = max(when, locked.started_at) if locked.started_at else when
            locked.end_reason = reason
        locked.updated_at = utcnow()
        if new is CallStatus.IN_PROGRESS or new.terminal:  # the outbox, in this very transaction
            await enqueue_call_status(self.session, locked, started=not new.terminal)
        return decision

    async def _move(self, call: Call, new: CallStatus) -> bool:
        """Set the status ``call`` was read with to ``new``, unless another writer changed it since."""
        moved = await self.session.execute(
            update(Call).where(Call.id == call.id, Call.status == call.status).values(status=new.value)
        )
        return getattr(moved, "rowcount", 0) == 1

    async def note_ringing(self, call_id: str, at: datetime) -> None:
        """When the call rang, learned after its status moved past ringing (a carrier's callbacks arrive in
        any order): fills the gap, never moves a time already known."""
        await self.session.execute(
            update(Call).where(Call.id == call_id, Call.ringing_at.is_(None)).values(ringing_at=at)
        )

    async def touch(self, call_ids: Sequence[str]) -> None:
        """Mark calls as recently active (recovery leaves recently active calls of other workers alone)."""
        if call_ids:
            await self.session.execute(
                update(Call).where(Call.id.in_(list(call_ids))).values(updated_at=utcnow())
            )

    async def active(self, *, idle_before: datetime | None = None) -> list[Call]:
        statement = select(Call).where(Call.status.in_([s.value for s in ACTIVE]))
        if idle_before is not None:
            statement = statement.where(Call.updated_at < idle_before)
        return list((await self.session.scalars(statement)).all())

    async def page(
        self, org_id: str, filters: CallFilters, limit: int, cursor: str | None
    ) -> tuple[list[Call], str | None]:
        statement = select(Call).where(Call.org_id == org_id)
        if filters.agent_id:
            statement = statement.where(Call.agent_id == filters.agent_id)
        if filters.statuses:
            statement = statement.where(Call.status.in_(list(filters.statuses)))
        if filters.direction:
            statement = statement.where(Call.direction == filters.direction)
        if filters.since:
            statement = statement.where(Call.created_at >= filters.since)
        if filters.until:
            statement = statement.where(Call.created_at < filters.until)
        return await page_newest_first(self.session, statement, Call.created_at, Call.id, limit, cursor)

    # --- timeline -------------------------------------------------------------------------------------

    async def add_events(self, rows: Sequence[dict[str, Any]]) -> None:
        await insert_ignore(self.session, CallEvent, rows, ["call_id", "seq"])

    async def events(
        self, call_id: str, *, after_seq: int = 0, limit: int | None = None, types: Sequence[str] = ()
    ) -> list[CallEvent]:
        statement = select(CallEvent).where(CallEvent.call_id == call_id, CallEvent.seq > after_seq)
        if types:
            statement = statement.where(CallEvent.type.in_(list(types)))
        statement = statement.order_by(CallEvent.seq)
        if limit is not None:
            statement = statement.limit(limit)
        return list((await self.session.scalars(statement)).all())

    async def last_event(self, call_id: str) -> CallEvent | None:
        return await self.session.scalar(
            select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.seq.desc()).limit(1)
        )

    async def save_turns(self, rows: Sequence[dict[str, Any]]) -> None:
        await upsert(self.session, TranscriptTurn, rows, ["call_id", "seq"])

    async def turns(self, call_id: str) -> list[TranscriptTurn]:
        result = await self.session.scalars(
            select(TranscriptTurn)
            .where(TranscriptTurn.call_id == call_id)
            .order_by(TranscriptTurn.start_ms, TranscriptTurn.seq)
        )
        return list(result.all())

    # --- recordings -----------------------------------------------------------------------------------

    async def recording(self, call_id: str) -> Recording | None:
        return await self.session.scalar(select(Recording).where(Recording.call_id == call_id))

    async def start_recording(self, call_id: str, key: str, sample_rate: int) -> Recording:
        row = Recording(
            id=new_id("rec"),
            call_id=call_id,
            artifact_key=key,
            sample_rate=sample_rate,
            channels=2,
            status="recording",
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def unfinished_recordings(self) -> list[Recording]:
        return list(
            (await self.session.scalars(select(Recording).where(Recording.status == "recording"))).all()
        )
