"""Threat: a crash loses what was said and misstates the bill.

A server killed (SIGKILL) while its agent is speaking must come back with the call as it happened: the
reply being spoken kept in the transcript (what the caller heard of it, marked interrupted), the
recording up to within a second of the kill, and the call ending at its last sign of life (its last
event, its row's last touch, how far its recording got), not when the server happened to restart (the
duration is what telephony minutes are billed on).
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from parley.config import Settings
from parley.platform.recordings import recording_key
from parley.platform.runtime import Platform
from tests.timeline.sigkill_worker import LONG_ANSWER

ROOT = Path(__file__).resolve().parents[2]
PLAYED = "agent.audio.played "


async def kill_while_the_agent_speaks(data_dir: Path, db_url: str) -> tuple[list[str], float, float]:
    """The worker's output, and when it was killed (monotonic, as the worker's clock, and wall time)."""
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.timeline.sigkill_worker",
        str(data_dir),
        db_url,
        "agent",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdout is not None
    lines: list[str] = []
    try:
        while not any(line.startswith(PLAYED) for line in lines):
            line = await asyncio.wait_for(worker.stdout.readline(), 30)
            assert line, f"the worker exited early after {lines}"
            lines.append(line.decode().strip())
        await asyncio.sleep(0.4)  # the first clause was heard; the second is playing
        killed_at, killed_wall = time.monotonic(), time.time()
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        await worker.wait()
    lines += (await worker.stdout.read()).decode().splitlines()
    return lines, killed_at, killed_wall


def last_journaled_wall(data_dir: Path) -> float:
    walls: list[float] = []
    for journal in (data_dir / "timeline").glob("*.jsonl"):
        for line in journal.read_text().splitlines():
            try:
                walls.append(float(json.loads(line)["w"]))
            except (ValueError, KeyError):
                continue  # a torn last line
    assert walls, "the killed worker left its journal"
    return max(walls)


async def test_a_crash_mid_reply_keeps_what_was_said_and_bills_only_the_call(
    db_url: str, tmp_path: Path
) -> None:
    """Threat: a crash loses what was said and misstates the bill. After a SIGKILL mid-reply, the
    transcript keeps the interrupted reply with its heard part, the recording ends within a second of
    the kill, and the call ends at the latest sign of life before the kill (so its duration is neither
    cut short nor stretched to the restart)."""
    lines, killed_at, killed_wall = await kill_while_the_agent_speaks(tmp_path, db_url)
    _, call_id, origin = lines[0].split()
    heard = [line.removeprefix(PLAYED) for line in lines if line.startswith(PLAYED)]
    last_wall = last_journaled_wall(tmp_path)

    platform = await Platform.open(Settings(data_dir=tmp_path, database_url=db_url))  # restart: recovery
    try:
        detail = await platform.calls.detail(platform.default_org_id, call_id)
        assert detail.recording is not None
        wav = await platform.artifacts.get_bytes(recording_key(call_id))
    finally:
        await platform.close()
    assert (detail.status, detail.end_reason) == ("failed", "interrupted"), "the existing recovery verdict"

    # 1. What was said: the reply being spoken, as far as it was heard, marked interrupted.
    assert [(t.speaker, t.interrupted) for t in detail.transcript] == [("user", False), ("agent", True)]
    spoken = detail.transcript[-1].text
    assert spoken.startswith(heard[-1]) and LONG_ANSWER.startswith(spoken) and spoken != LONG_ANSWER

    # 2. The recording: up to within a second of the kill, with the agent still talking at its end.
    stereo, rate = sf.read(io.BytesIO(wav), dtype="int16", always_2d=True)
    assert detail.recording.status == "ready" and detail.recording.duration_ms == round(
        len(stereo) / rate * 1000
    )
    ends_at = float(origin) + len(stereo) / rate
    assert killed_at - 1.0 <= ends_at <= killed_at, (
        f"the recording ends {killed_at - ends_at:.2f} s before the kill"
    )
    agent_tail = stereo[-rate // 10 :, 1].astype(np.float64)
    assert np.abs(agent_tail).mean() > 1000, "the agent's channel holds its voice up to the end"

    # 3. The bill: the call ends at the latest sign of life (its last journaled event, the row's last
    # touch, how far the recording got), never before its last event and never after the kill.
    assert detail.ended_at is not None and detail.started_at is not None and detail.duration_s is not None
    assert last_wall - 0.001 <= detail.ended_at.timestamp() <= killed_wall
    ended = detail.ended_at.timestamp()
    recorded_until = time.time() - (time.monotonic() - float(origin)) + len(stereo) / rate
    assert ended >= recorded_until - 0.1, "the caller's line was up at least as long as it was recorded"
    assert abs(detail.duration_s - (ended - detail.started_at.timestamp())) < 0.01
