"""Killing the process mid-call (SIGKILL) loses neither the call nor any turn that was final before it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from parley.config import Settings
from parley.platform.runtime import Platform

ROOT = Path(__file__).resolve().parents[2]


async def test_a_killed_call_is_kept_and_marked_interrupted(db_url: str, tmp_path: Path) -> None:
    worker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.timeline.sigkill_worker",
        str(tmp_path),
        db_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert worker.stdout is not None
    lines: list[str] = []
    try:
        while not lines or lines[-1] != "speaking":
            line = await asyncio.wait_for(worker.stdout.readline(), 30)
            assert line, f"the worker exited early after {lines}"
            lines.append(line.decode().strip())
        await asyncio.sleep(0.5)  # mid-way through the third turn
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        await worker.wait()
    call_id = lines[0].split()[1]
    assert lines[1:] == [
        "transcript.final What time do you open?",
        "agent.reply.done",
        "transcript.final And on Sundays?",
        "agent.reply.done",
        "speaking",
    ]

    platform = await Platform.open(Settings(data_dir=tmp_path, database_url=db_url))  # restart: recovery
    try:
        detail = await platform.calls.detail(platform.default_org_id, call_id)
    finally:
        await platform.close()
    assert detail.status == "failed" and detail.end_reason == "interrupted"
    assert [(t.speaker, t.text) for t in detail.transcript] == [
        ("user", "What time do you open?"),
        ("agent", "We open at nine."),
        ("user", "And on Sundays?"),
        ("agent", "Sundays we are closed."),
    ]
    assert detail.events[0].type == "session.started"
    assert any(e.type == "speech.started" and e.t_ms > detail.transcript[-1].end_ms for e in detail.events), (
        "the third turn had begun"
    )
    assert detail.recording is not None and detail.recording.status == "ready"
    assert detail.recording.duration_ms > detail.transcript[-1].end_ms - 1000
    assert {line.kind for line in detail.costs.lines} >= {"asr_seconds", "tts_characters"}
    assert not list((tmp_path / "timeline").glob("*.jsonl")), "the journal was replayed and removed"
