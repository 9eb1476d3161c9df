"""Start-up recovery: abandoned calls fail as interrupted; live calls and their recordings are left be."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from parley.audio.frame import AudioFrame
from parley.audio.wav import write_wav
from parley.config import Settings
from parley.platform.recovery import recover_interrupted
from parley.platform.runtime import Platform
from parley.store.calls import CallFilters, CallRepository
from parley.store.models import Call
from parley.store.types import utcnow


async def test_stale_calls_fail_as_interrupted_and_fresh_ones_do_not(db_url: str, tmp_path: Path) -> None:
    platform = await Platform.open(Settings(data_dir=tmp_path, database_url=db_url), consume=False)
    try:
        org = platform.default_org_id
        stale, _ = await platform.calls.create(org, direction="outbound", transport="twilio")
        fresh, _ = await platform.calls.create(org, direction="inbound", transport="twilio")
        queued, _ = await platform.calls.create(org, direction="outbound", transport="twilio")
        for call in (stale, fresh):
            await platform.calls.set_status(call.id, "in_progress")
        async with platform.db.session() as session:
            row = await session.get(Call, stale.id)
            assert row is not None
            row.updated_at = utcnow() - timedelta(minutes=10)

        live = await platform.live_call(agent_ref=None)  # a recording in progress in this process
        assert live.recorder is not None
        live.hear(AudioFrame(np.full(16000, 1000, np.int16), 16000, live.recorder.origin))
        dead = platform.recordings.partial_path(fresh.id)  # and one whose writer died
        async with platform.db.session() as session:
            await CallRepository(session).start_recording(fresh.id, f"recordings/{fresh.id}.wav", 16000)
        write_wav(dead, [np.zeros(8000, np.int16), np.zeros(8000, np.int16)], 16000)

        report = await recover_interrupted(platform, stale_after=timedelta(minutes=3))
        assert report.calls == 1 and report.recordings == 1
        after = {c.id: c for c in (await platform.calls.page(org, filters=CallFilters())).data}
        assert (after[stale.id].status, after[stale.id].end_reason) == ("failed", "interrupted")
        assert after[fresh.id].status == "in_progress" and after[queued.id].status == "queued"
        recording = (await platform.calls.detail(org, fresh.id)).recording
        assert recording is not None and recording.status == "ready" and recording.duration_ms == 500
        live_recording = (await platform.calls.detail(org, live.call_id)).recording
        assert live_recording is not None and live_recording.status == "recording", "its writer is alive"
        await live.finish()
    finally:
        await platform.close()


async def test_a_recording_the_store_refuses_is_kept_and_never_stops_a_start(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing bucket used to fail the whole recovery pass, and with it every server start."""
    platform = await Platform.open(Settings(data_dir=tmp_path, database_url=db_url), consume=False)
    try:
        org = platform.default_org_id
        calls = [
            (await platform.calls.create(org, direction="inbound", transport="twilio"))[0] for _ in range(2)
        ]
        for call in calls:
            async with platform.db.session() as session:
                await CallRepository(session).start_recording(call.id, f"recordings/{call.id}.wav", 16000)
            platform.recordings.workdir.mkdir(parents=True, exist_ok=True)
            silence = np.zeros(8000, np.int16)
            write_wav(platform.recordings.partial_path(call.id), [silence, silence], 16000)
        put = platform.recordings.artifacts.put_file
        refused = calls[0].id

        async def bucket_gone(key: str, path: Path, *args: object, **kwargs: object) -> None:
            if refused in key:
                raise OSError("NoSuchBucket: the bucket does not exist")
            await put(key, path, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(platform.recordings.artifacts, "put_file", bucket_gone)
        assert await platform.recordings.recover() == 1, "the other recording is published all the same"
        assert platform.recordings.partial_path(refused).is_file(), "kept for the next try"
        kept = (await platform.calls.detail(org, refused)).recording
        assert kept is not None and kept.status == "recording"
    finally:
        await platform.close()
