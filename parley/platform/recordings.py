"""Call recordings: a stereo WAV written while the call runs, moved to the artifact store at hang-up.

A recording row exists from the first second (status ``recording``) and points at the artifact key it
will have; the partial file lives in ``<data_dir>/recordings``. If the process dies, recovery uploads
the partial file (the WAV header is kept valid as it is written) and marks it ready.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

import structlog
from sqlalchemy import delete

from parley.artifacts.base import ArtifactStore
from parley.audio.frame import PCM16
from parley.audio.wav import write_wav
from parley.platform.schemas import RecordingOut
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.models import Recording
from parley.store.types import utcnow
from parley.timeline.recorder import RecordingInfo, StereoRecorder, is_being_written

log = structlog.get_logger("parley.platform.recordings")


def recording_key(call_id: str) -> str:
    return f"recordings/{call_id}.wav"


class Recordings:
    def __init__(
        self,
        db: Database,
        artifacts: ArtifactStore,
        workdir: Path,
        *,
        sample_rate: int = 16000,
        url_expiry: timedelta = timedelta(hours=1),
    ) -> None:
        self.db = db
        self.artifacts = artifacts
        self.workdir = workdir
        self.sample_rate = sample_rate
        self.url_expiry = url_expiry

    def partial_path(self, call_id: str) -> Path:
        return self.workdir / f"{call_id}.wav"

    async def start(self, call_id: str, origin: float | None = None) -> StereoRecorder:
        async with self.db.session() as session:
            await CallRepository(session).start_recording(call_id, recording_key(call_id), self.sample_rate)
        return StereoRecorder(self.partial_path(call_id), self.sample_rate, origin=origin)

    async def finish(self, call_id: str, recorder: StereoRecorder) -> None:
        """Close the file, move it to the artifact store and mark the recording ready."""
        info = recorder.finalize()
        await self._publish(call_id, info.path, info)

    async def _publish(self, call_id: str, path: Path, info: RecordingInfo | None = None) -> None:
        size = info.size_bytes if info else (await asyncio.to_thread(path.stat)).st_size
        duration_ms = (
            round(info.duration_s * 1000) if info else await asyncio.to_thread(_wav_duration_ms, path)
        )
        await self.artifacts.put_file(recording_key(call_id), path, "audio/wav", move=True)
        async with self.db.session() as session:
            row = await CallRepository(session).recording(call_id)
            if row is not None:
                row.status, row.size_bytes, row.duration_ms, row.finalized_at = (
                    "ready",
                    size,
                    duration_ms,
                    utcnow(),
                )

    async def store(self, call_id: str, channels: tuple[PCM16, PCM16], sample_rate: int) -> None:
        """A recording made elsewhere (a simulation's mix), stored whole."""
        async with self.db.session() as session:
            await CallRepository(session).start_recording(call_id, recording_key(call_id), sample_rate)
        self.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.workdir, suffix=".wav", delete=False) as tmp:
            written = Path(tmp.name)
        await asyncio.to_thread(write_wav, written, list(channels), sample_rate)
        # Whole, under the name recovery looks for: should the upload fail, the next start publishes it.
        path = await asyncio.to_thread(written.replace, self.partial_path(call_id))
        await self._publish(call_id, path)

    async def recover(self) -> int:
        """Publish recordings whose writer died mid-call; returns how many."""
        async with self.db.session() as session:
            rows = await CallRepository(session).unfinished_recordings()
        recovered = 0
        for row in rows:
            path = self.partial_path(row.call_id)
            if not path.is_file() or is_being_written(path):
                continue
            try:
                await self._publish(row.call_id, path)
            except Exception as exc:  # one upload the store refuses never holds up the others, nor a start
                log.error(
                    "recording not published; kept for the next try", call_id=row.call_id, error=repr(exc)
                )
                continue
            recovered += 1
        return recovered

    async def view(self, row: Recording) -> RecordingOut:
        url = await self.artifacts.url(row.artifact_key, self.url_expiry) if row.status == "ready" else None
        return RecordingOut(
            status="ready" if row.status == "ready" else "recording",
            url=url,
            content_type=row.content_type,
            channels=row.channels,
            sample_rate=row.sample_rate,
            duration_ms=row.duration_ms,
            size_bytes=row.size_bytes,
        )

    async def apply_retention(self, days: int) -> int:
        """Delete recordings older than ``days`` (files and rows); returns how many files went."""
        purged = await self.artifacts.purge_older_than(timedelta(days=days), prefix="recordings/")
        cutoff = utcnow() - timedelta(days=days)
        async with self.db.session() as session:
            await session.execute(
                delete(Recording).where(Recording.status == "ready", Recording.finalized_at < cutoff)
            )
        return purged


def _wav_duration_ms(path: Path) -> int:
    import wave

    try:
        with wave.open(str(path), "rb") as wav:
            return round(wav.getnframes() / wav.getframerate() * 1000)
    except (wave.Error, EOFError):
        return 0
