"""Start-up recovery: calls a dead process left mid-flight are completed on the books as ``failed``
with reason ``interrupted``, keeping every event and transcript turn that reached the journal.

1. Journals of dead writers (in-process timeline) are replayed through the persister (idempotent),
   then their calls are marked interrupted. A marked call ends at its last event, and a reply it was
   speaking is closed as the engine closes a stopped one (``reply.cancelled`` with what had been
   heard, from its ``agent.audio.played`` marks), so the transcript keeps it as an interrupted turn.
2. Calls still ringing or in progress whose row nobody has touched for ``stale_after`` are marked too:
   that covers the Redis timeline, where no journal exists (live calls refresh their row every 30 s).
3. Recordings whose writer died are published as they are (a valid WAV up to the kill).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import structlog

from parley.platform.agents import NotFound
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus, Decision, InvalidStatusTransition
from parley.store.models import Call
from parley.store.types import utcnow
from parley.timeline.digest import TURN_EVENTS, unfinished_replies
from parley.timeline.envelope import Envelope
from parley.timeline.journal import Journal
from parley.timeline.memory import MemoryTimeline

log = structlog.get_logger("parley.platform.recovery")

if TYPE_CHECKING:
    from parley.platform.runtime import Platform

INTERRUPTED = "interrupted"


@dataclass(slots=True)
class RecoveryReport:
    journals: int = 0
    calls: int = 0
    recordings: int = 0


async def recover_interrupted(
    platform: Platform, *, stale_after: timedelta | None = timedelta(minutes=3)
) -> RecoveryReport:
    report = RecoveryReport()
    bus = platform.bus
    directory = (
        bus.journal.directory
        if isinstance(bus, MemoryTimeline) and bus.journal is not None
        else platform.settings.data_dir / "timeline"
    )
    for orphan in Journal.orphans(directory):
        try:
            if orphan.envelopes:
                await platform.persister.store(orphan.envelopes)
                session_id = orphan.session_id
                assert session_id is not None
                async with platform.db.session() as session:
                    call = (await CallRepository(session).by_sessions([session_id])).get(session_id)
                if call is not None and await _interrupt(platform, call):
                    report.calls += 1
            orphan.remove()
            report.journals += 1
        finally:
            orphan.release()
    if stale_after is not None:
        async with platform.db.session() as session:
            stale = await CallRepository(session).active(idle_before=utcnow() - stale_after)
        for call in stale:
            if await _interrupt(platform, call):
                report.calls += 1
    report.recordings = await platform.recordings.recover()
    return report


async def _interrupt(platform: Platform, call: Call) -> bool:
    """End the call where its timeline ends: the reply being spoken is closed with what was heard,
    and the call ends at its last event (not now: a restart hours later must not bill those hours)."""
    if CallStatus(call.status).terminal:
        return False
    async with platform.db.session() as session:
        calls = CallRepository(session)
        last = await calls.last_event(call.id)
        records = await calls.events(call.id, types=sorted(TURN_EVENTS)) if last is not None else []
    if last is not None:
        closing = [
            Envelope(call.session_id, last.seq + n, kind, last.t, last.at.timestamp(), data)
            for n, (kind, data) in enumerate(unfinished_replies(records, INTERRUPTED), 1)
        ]
        if closing:
            await platform.persister.store(closing)
    try:
        decision, _ = await platform.calls.set_status(
            call.id, CallStatus.FAILED, reason=INTERRUPTED, at=last.at if last is not None else None
        )
    except NotFound:
        return False
    except InvalidStatusTransition as exc:
        log.info("recovery left a call as it is", call_id=call.id, reason=str(exc))
        return False
    return decision is Decision.APPLY
