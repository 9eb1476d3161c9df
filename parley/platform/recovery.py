"""Start-up recovery: calls a dead process left mid-flight are completed on the books as ``failed``
with reason ``interrupted``, keeping every event and transcript turn that reached the journal.

1. Journals of dead writers (in-process timeline) are replayed through the persister (idempotent),
   then their calls are marked interrupted.
2. Calls still ringing or in progress whose row nobody has touched for ``stale_after`` are marked too:
   that covers the Redis timeline, where no journal exists (live calls refresh their row every 30 s).
3. Recordings whose writer died are published as they are (a valid WAV up to the kill).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus, Decision, InvalidStatusTransition
from parley.store.models import Call
from parley.store.types import utcnow
from parley.timeline.journal import Journal
from parley.timeline.memory import MemoryTimeline

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
    if CallStatus(call.status).terminal:
        return False
    try:
        decision, _ = await platform.calls.set_status(call.id, CallStatus.FAILED, reason=INTERRUPTED)
    except InvalidStatusTransition as exc:
        print(f"parley: recovery left call {call.id} as it is: {exc}", file=sys.stderr)
        return False
    return decision is Decision.APPLY
