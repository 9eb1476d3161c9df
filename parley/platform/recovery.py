"""Start-up recovery: calls a dead process left mid-flight are completed on the books as ``failed``
with reason ``interrupted``, keeping every event and transcript turn that reached the journal.

1. Journals of dead writers (in-process timeline) are replayed through the persister (idempotent),
   then their calls are marked interrupted. A reply a marked call was speaking is closed as the engine
   closes a stopped one (``reply.cancelled`` with what had been heard, from its ``agent.audio.played``
   marks), so the transcript keeps it as an interrupted turn.
2. Calls still ringing or in progress whose row nobody has touched for ``stale_after`` are marked too:
   that covers the Redis timeline, where no journal exists (live calls refresh their row every 30 s).
3. Recordings whose writer died are published as they are (a valid WAV up to the kill).

A marked call ends at the latest evidence that it was still alive, never at the restart (a restart
hours later must not bill those hours): its last event; the last time its row was touched (the
heartbeat every 30 s, the persister storing events, a carrier's callback), read before the replay
touches it; and how far its recording got (the recording row's start plus the audio in the partial WAV,
or in the recording an earlier pass published). The last event alone can be a fraction of a
millisecond into a call on a silent line, while the caller's audio kept coming for seconds.
"""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from parley.platform.agents import NotFound
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus, Decision, InvalidStatusTransition
from parley.store.models import Call, Recording
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
                session_id = orphan.session_id
                assert session_id is not None
                touched = await _touched(platform, session_id)  # before the replay touches the row
                await platform.persister.store(orphan.envelopes)
                async with platform.db.session() as session:
                    call = (await CallRepository(session).by_sessions([session_id])).get(session_id)
                if call is not None and await _interrupt(platform, call, touched):
                    report.calls += 1
            orphan.remove()
            report.journals += 1
        finally:
            orphan.release()
    if stale_after is not None:
        async with platform.db.session() as session:
            stale = await CallRepository(session).active(idle_before=utcnow() - stale_after)
        for call in stale:
            if await _interrupt(platform, call, call.updated_at):
                report.calls += 1
    report.recordings = await platform.recordings.recover()
    return report


async def _touched(platform: Platform, session_id: str) -> datetime | None:
    """When the session's call row was last touched (None before it has one)."""
    async with platform.db.session() as session:
        call = (await CallRepository(session).by_sessions([session_id])).get(session_id)
    return call.updated_at if call is not None else None


async def _interrupt(platform: Platform, call: Call, touched: datetime | None) -> bool:
    """End the call at the latest evidence it was alive (its last event, ``touched``: when its row was
    last touched, how far its recording got), not now; the reply being spoken is closed with what was
    heard, at the last event."""
    if CallStatus(call.status).terminal:
        return False
    async with platform.db.session() as session:
        calls = CallRepository(session)
        last = await calls.last_event(call.id)
        records = await calls.events(call.id, types=sorted(TURN_EVENTS)) if last is not None else []
        recording = await calls.recording(call.id)
    if last is not None:
        closing = [
            Envelope(call.session_id, last.seq + n, kind, last.t, last.at.timestamp(), data)
            for n, (kind, data) in enumerate(unfinished_replies(records, INTERRUPTED), 1)
        ]
        if closing:
            await platform.persister.store(closing)
    recorded = await _recorded_until(platform, recording) if recording is not None else None
    evidence = [at for at in (last.at if last is not None else None, touched, recorded) if at is not None]
    ended = min(max(evidence), utcnow()) if evidence else None
    try:
        decision, _ = await platform.calls.set_status(
            call.id, CallStatus.FAILED, reason=INTERRUPTED, at=ended
        )
    except NotFound:
        return False
    except InvalidStatusTransition as exc:
        log.info("recovery left a call as it is", call_id=call.id, reason=str(exc))
        return False
    return decision is Decision.APPLY


async def _recorded_until(platform: Platform, recording: Recording) -> datetime | None:
    """How far the call's recording got, on the wall clock: its row is made just before the recorder
    starts, and the recorder writes audio only once it is half a second old, so this is a lower bound
    of when the call was last alive. A recording published at hang-up ends no later than it was."""
    if recording.status == "ready":
        seconds = recording.duration_ms / 1000
    else:
        seconds = await asyncio.to_thread(_wav_seconds, platform.recordings.partial_path(recording.call_id))
    if not seconds:
        return None
    until = recording.created_at + timedelta(seconds=seconds)
    return min(until, recording.finalized_at) if recording.finalized_at is not None else until


def _wav_seconds(path: Path) -> float:
    """The audio in a WAV a dead recorder left (0 when there is none or it cannot be read)."""
    try:
        with wave.open(str(path), "rb") as wav:
            return wav.getnframes() / wav.getframerate()
    except FileNotFoundError:  # none on this machine (another worker's), or nothing recorded
        return 0.0
    except (OSError, wave.Error, EOFError) as exc:  # no evidence from it; the other signs still count
        log.warning("a partial recording could not be read", path=str(path), error=repr(exc))
        return 0.0
