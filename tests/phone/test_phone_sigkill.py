"""The call record is never lost: a server killed (SIGKILL) in the middle of a phone call comes back with
the call on the books as it happened, and Twilio's late ``completed`` callback does not rewrite it.

The server is the real one in its own process (``sigkill_server.py``); this process plays Twilio (the
local Twilio: signed webhooks, ``<Connect><Stream>``, a caller who speaks and hears in real time).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx

from parley.bench.server_process import READY
from parley.config import Settings
from parley.engine.events import now
from parley.platform.runtime import Platform
from parley.store.lifecycle import Decision
from parley.twilio_sim.callee import SAMPLE_RATE, CalleeScript
from parley.twilio_sim.caller import SimulatedCaller
from parley.twilio_sim.server import TwilioSim, serving
from tests.phone.sigkill_server import (
    ACCOUNT_SID,
    ANSWER,
    API_KEY,
    AUTH_TOKEN,
    CALLER,
    GREETING,
    LONG_ANSWER,
    NUMBER,
    QUESTIONS,
)
from tests.security.test_crash_recovery import last_journaled_wall
from tests.store.fixtures import db_url, postgres_template, sqlite_template  # noqa: F401  (both dialects)

ROOT = Path(__file__).resolve().parents[2]
QUESTION = "tone:220:0.8"
"""What the caller says each turn (the scripted recognizer hears the next line of ``QUESTIONS``)."""
HEARD_BEFORE_KILL_S = 2.5
"""How much of the long answer the caller has heard when the server dies: its first clause and more."""


class ServerProcess:
    """The server in its own process; its output (structlog's lines) is kept for when a test fails."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: list[str] = []
        self.port: int | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, data_dir: Path, database_url: str, twilio_api: str, port: int = 0) -> ServerProcess:
        """Once it serves on its port (the first free one, or ``port``) with its models warm."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.phone.sigkill_server",
            str(data_dir),
            database_url,
            twilio_api,
            str(port),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        server = cls(process)
        try:
            await asyncio.wait_for(server._ready(), 60)
        except BaseException:
            await server.stop(signal.SIGKILL)
            raise
        server._reader = asyncio.create_task(server._read())  # never let it block on a full pipe
        return server

    async def _ready(self) -> None:
        assert self.process.stdout is not None
        while self.port is None:
            line = (await self.process.stdout.readline()).decode()
            assert line, f"the server exited before it served: {self.output}"
            self.output.append(line.rstrip())
            if line.startswith(READY):
                self.port = int(line.removeprefix(READY))

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            self.output.append(line.decode().rstrip())

    async def stop(self, sig: int) -> None:
        if self.process.returncode is None:
            os.kill(self.process.pid, sig)
        try:
            await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:  # a drain that hangs is a failure of its own, not a stuck test run
            self.process.kill()
            await self.process.wait()
            raise
        if self._reader is not None:
            await self._reader
        print(
            f"--- server process {self.process.pid} (exit {self.process.returncode}) ---",
            *self.output,
            sep="\n",
        )


async def until(condition: Callable[[], bool], within_s: float, what: str) -> None:
    deadline = now() + within_s
    while not condition():  # polling what the simulated caller said and heard
        assert now() < deadline, f"timed out waiting: {what}"
        await asyncio.sleep(0.02)


def heard_s(caller: SimulatedCaller, since: float) -> float:
    """Seconds of agent voice the caller has heard since ``since`` (up to now, not what is queued)."""
    span = caller.heard_voice(since, now())
    return 0.0 if span is None else span[1] - span[0]


async def test_a_phone_call_killed_mid_answer_is_on_the_books_as_it_happened(
    db_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    sim = TwilioSim(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)
    asks = CalleeScript(say=(QUESTION, QUESTION), reply_gap_s=0.6)
    async with serving(sim):
        assert sim.base_url is not None
        server = await ServerProcess.start(tmp_path, db_url, sim.base_url)
        port = server.port
        base = f"http://127.0.0.1:{port}"
        try:
            call = sim.place_inbound(
                CALLER, NUMBER, f"{base}/twilio/voice", status_callback=f"{base}/twilio/status", script=asks
            )
            caller = await call.wait_connected()
            await until(lambda: len(caller.spoken) == 2, 30, "the caller asks both questions")
            first, second = caller.spoken
            asked = second.start + len(second.pcm) / SAMPLE_RATE
            await until(lambda: heard_s(caller, asked) >= HEARD_BEFORE_KILL_S, 15, "the long answer plays")
            killed_at, killed_wall = now(), time.time()
        finally:
            await server.stop(signal.SIGKILL)
        assert caller.started_at is not None
        assert caller.heard_voice(caller.started_at, first.start) is not None, "the greeting was heard"
        assert caller.heard_voice(first.start, second.start) is not None, "the first answer was heard"
        assert caller.heard_voice(killed_at - 0.3, killed_at) is not None, "the agent was speaking"

        # Twilio sees the stream drop, ends the call, and its `completed` callback finds nobody.
        assert await call.wait_ended(10) == "completed"
        (completed,) = call.webhooks_of("status")
        assert completed.params["CallStatus"] == "completed" and completed.status_code is None
        call_id = call.streams[0].parameters["call_id"]
        last_wall = last_journaled_wall(tmp_path)

        # The restarted server (same URL, so Twilio's signature holds) recovers the call; the callback
        # Twilio could not deliver then arrives and changes nothing.
        assert port is not None
        server = await ServerProcess.start(tmp_path, db_url, sim.base_url, port)
        try:
            assert server.port == port
            async with httpx.AsyncClient(
                base_url=base, headers={"Authorization": f"Bearer {API_KEY}"}, trust_env=False
            ) as api:
                before = (await api.get(f"/v1/calls/{call_id}")).json()
                async with httpx.AsyncClient(trust_env=False) as twilio:
                    delivered = await twilio.post(
                        completed.url,
                        data=completed.params,
                        headers={"X-Twilio-Signature": completed.signature},
                    )
                after = (await api.get(f"/v1/calls/{call_id}")).json()
        finally:
            await server.stop(signal.SIGTERM)
    assert delivered.status_code == 204, delivered.text
    assert (before["status"], before["end_reason"]) == ("failed", "interrupted")
    kept = ("status", "end_reason", "started_at", "ended_at", "duration_s", "costs")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}, "the late callback rewrote history"

    platform = await Platform.open(Settings(data_dir=tmp_path, database_url=db_url))
    try:
        detail = await platform.calls.detail(platform.default_org_id, call_id)
        # Straight through the phone service, as the webhook does: found, and taken as a second witness of
        # the end already on the books (its CallDuration billed; the call's history kept).
        update = await platform.phone.status(
            call.sid,
            "completed",
            parsedate_to_datetime(completed.params["Timestamp"]),
            duration_s=int(completed.params["CallDuration"]),
        )
        unchanged = await platform.calls.detail(platform.default_org_id, call_id)
    finally:
        await platform.close()

    # Who called whom, over which line.
    assert (detail.direction, detail.transport) == ("inbound", "twilio")
    assert (detail.from_number, detail.to_number, detail.provider_call_id) == (CALLER, NUMBER, call.sid)
    # Every turn that was final before the kill, and the answer cut off as far as it was heard.
    assert [(t.speaker, t.text, t.interrupted) for t in detail.transcript[:-1]] == [
        ("agent", GREETING, False),
        ("user", QUESTIONS[0], False),
        ("agent", ANSWER, False),
        ("user", QUESTIONS[1], False),
    ]
    cut = detail.transcript[-1]
    assert cut.speaker == "agent" and cut.interrupted
    assert cut.text.startswith("Our opening hours are simple.") and LONG_ANSWER.startswith(cut.text)
    assert cut.text != LONG_ANSWER
    # The recording, into the answer that was cut off (a partial WAV loses under a second).
    assert detail.recording is not None and detail.recording.status == "ready"
    assert detail.recording.duration_ms > cut.start_ms + 1000
    # Ended at its last sign of life before the kill (failed: interrupted), and billed for that much.
    assert (detail.status, detail.end_reason) == ("failed", "interrupted")
    assert detail.ended_at is not None and detail.started_at is not None and detail.duration_s is not None
    assert last_wall - 0.001 <= detail.ended_at.timestamp() <= killed_wall
    ended = detail.ended_at.timestamp()
    assert abs(detail.duration_s - (ended - detail.started_at.timestamp())) < 0.01
    minutes = [line for line in detail.costs.lines if line.kind == "telephony_minutes"]
    assert [(line.provider, line.quantity) for line in minutes] == [("twilio", 1.0)]
    assert {line.kind for line in detail.costs.lines} >= {"asr_seconds", "tts_characters"}
    assert not list((tmp_path / "timeline").glob("*.jsonl")), "the journal was replayed and removed"

    assert update.call is not None and update.call.id == call_id
    assert update.decision is Decision.DUPLICATE
    assert (unchanged.status, unchanged.end_reason, unchanged.ended_at) == (
        detail.status,
        detail.end_reason,
        detail.ended_at,
    )
    assert unchanged.duration_s == detail.duration_s
