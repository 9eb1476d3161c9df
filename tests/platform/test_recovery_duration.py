"""A call a dead process left behind ends at the latest evidence that it was alive, not at its last event.

On a silent phone line the last event can come a fraction of a millisecond after the call started, while
the caller's audio kept arriving (the partial recording) and the call's heartbeat kept refreshing its row.
Ending the call at its last event billed a 3 s call (Twilio's own figure) as 0.0 s; the recovered call
now lasts as long as that evidence shows, and never until the restart.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from parley.audio.wav import write_wav
from parley.config import Settings
from parley.platform.recovery import recover_interrupted
from parley.platform.runtime import Platform
from parley.store.calls import CallRepository
from parley.store.models import Call, Recording
from parley.store.types import utcnow
from parley.timeline.envelope import Envelope
from parley.timeline.journal import Journal

RATE = 16000
SILENCE_S = 3.0
"""How long the caller's (silent) line was up when the server was killed."""


def _started(session_id: str, at: datetime) -> Envelope:
    return Envelope(session_id, 1, "session.started", 100.0, at.timestamp(), {})


def _state(session_id: str, at: datetime) -> Envelope:
    """The session's only other event, 0.3 ms in: it listens to a line where nobody says anything."""
    data = {"old": "idle", "new": "listening", "turn": "listening"}
    return Envelope(session_id, 2, "state.changed", 100.0003, at.timestamp() + 0.0003, data)


def _partial_recording(platform: Platform, call_id: str) -> None:
    """What the dead recorder left: ``SILENCE_S`` of a silent line, a playable WAV."""
    silence = np.zeros(int(SILENCE_S * RATE), np.int16)
    platform.recordings.workdir.mkdir(parents=True, exist_ok=True)
    write_wav(platform.recordings.partial_path(call_id), [silence, silence], RATE)


async def test_a_silent_call_killed_mid_line_lasts_as_long_as_its_recording_shows(
    db_url: str, tmp_path: Path
) -> None:
    platform = await Platform.open(
        Settings(data_dir=tmp_path, database_url=db_url), consume=False, recover=False
    )
    try:
        org = platform.default_org_id
        call, _ = await platform.calls.create(org, direction="inbound", transport="twilio")
        # An hour ago: the stream connected, the recorder started, the session started and listened.
        began = utcnow() - timedelta(hours=1)
        async with platform.db.session() as session:
            recording = await CallRepository(session).start_recording(
                call.id, f"recordings/{call.id}.wav", RATE
            )
            recording.created_at = began
            row = await session.get(Call, call.id)
            assert row is not None
            row.updated_at = began  # touched as the call started, never since (dead 3 s later)
        _partial_recording(platform, call.id)
        # The dead writer's journal (its lock went with the process): the only two events of the call.
        journal = Journal(tmp_path / "timeline")
        journal.append(_started(call.session_id, began))
        journal.append(_state(call.session_id, began))
        journal.close()

        report = await recover_interrupted(platform, stale_after=None)  # the restart, an hour later

        assert report.calls == 1 and report.recordings == 1
        detail = await platform.calls.detail(org, call.id)
        assert (detail.status, detail.end_reason) == ("failed", "interrupted")
        assert detail.started_at is not None and detail.ended_at is not None
        assert abs(detail.started_at.timestamp() - began.timestamp()) < 0.001
        assert detail.duration_s is not None
        assert abs(detail.duration_s - SILENCE_S) < 0.01, "the caller's line was up this long"
        assert detail.recording is not None and detail.recording.duration_ms == SILENCE_S * 1000
    finally:
        await platform.close()


async def test_a_stale_call_lasts_until_its_last_heartbeat(db_url: str, tmp_path: Path) -> None:
    """No journal and no recording here (the Redis timeline, another machine): the heartbeat is the
    latest sign of life, and the call is billed until then rather than for its first 0.3 ms."""
    platform = await Platform.open(
        Settings(data_dir=tmp_path, database_url=db_url), consume=False, recover=False
    )
    try:
        org = platform.default_org_id
        call, _ = await platform.calls.create(org, direction="inbound", transport="twilio")
        began = utcnow() - timedelta(minutes=10)
        await platform.persister.store([_started(call.session_id, began), _state(call.session_id, began)])
        last_beat = began + timedelta(minutes=6)
        async with platform.db.session() as session:
            row = await session.get(Call, call.id)
            assert row is not None
            row.updated_at = last_beat  # the heartbeat's last touch; the process died after it

        report = await recover_interrupted(platform, stale_after=timedelta(minutes=3))

        assert report.calls == 1
        detail = await platform.calls.detail(org, call.id)
        assert (detail.status, detail.end_reason) == ("failed", "interrupted")
        assert detail.ended_at is not None and detail.duration_s is not None
        assert abs(detail.ended_at.timestamp() - last_beat.timestamp()) < 0.001
        assert abs(detail.duration_s - 360.0) < 0.01
        minutes = [line for line in detail.costs.lines if line.kind == "telephony_minutes"]
        assert [line.quantity for line in minutes] == [6.0], "billed for the six minutes it was up"
    finally:
        await platform.close()


async def test_a_recording_published_by_an_earlier_pass_still_counts(db_url: str, tmp_path: Path) -> None:
    """With Redis, a start publishes a dead writer's recording at once, but its call is only stale (and
    ended) by a later sweep: the published recording, not the partial file, is then the evidence."""
    platform = await Platform.open(
        Settings(data_dir=tmp_path, database_url=db_url), consume=False, recover=False
    )
    try:
        org = platform.default_org_id
        call, _ = await platform.calls.create(org, direction="inbound", transport="twilio")
        began = utcnow() - timedelta(minutes=10)
        await platform.persister.store([_started(call.session_id, began), _state(call.session_id, began)])
        async with platform.db.session() as session:
            recording = await CallRepository(session).start_recording(
                call.id, f"recordings/{call.id}.wav", RATE
            )
            recording.created_at = began
            row = await session.get(Call, call.id)
            assert row is not None
            row.updated_at = began + timedelta(seconds=1)  # before its first heartbeat
        _partial_recording(platform, call.id)
        assert await platform.recordings.recover() == 1  # the earlier pass: published, call left alone
        async with platform.db.session() as session:
            published = await session.get(Recording, recording.id)
            assert published is not None and published.status == "ready"

        assert (await recover_interrupted(platform, stale_after=timedelta(minutes=3))).calls == 1

        detail = await platform.calls.detail(org, call.id)
        assert detail.duration_s is not None and abs(detail.duration_s - SILENCE_S) < 0.01
    finally:
        await platform.close()
