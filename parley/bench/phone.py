"""A phone call through the local Twilio, measured as the caller hears it.

``parley bench latency --transport twilio`` and ``parley simulate --transport twilio`` run the server in
its own process with the embedded stack and Twilio's webhooks on. This process plays Twilio and the
caller: the local Twilio dials a Parley number (signed voice webhook → TwiML → Media Stream), the caller
speaks each turn in real time as μ-law (optionally through a lossy, jittery network) and hears the agent
through a buffer that plays, marks and clears as Twilio's does. Latency is measured from the caller's
own signal to what reached the caller's ear; the transcript comes from the call record Parley kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from parley.audio.frame import PCM16
from parley.audio.resample import resample
from parley.bench.server_process import announce_port, server_process
from parley.engine.events import now
from parley.simulate import TurnResult, UserTurn, percentile
from parley.simulation import voiced_span
from parley.twilio_sim.caller import SAMPLE_RATE, SimulatedCaller
from parley.twilio_sim.network import NetworkProfile

QUIET_S = 1.2
"""Heard silence this long after a reply means the agent is done (its clauses follow each other closer)."""
PARLEY_NUMBER = "+14155550100"
CALLER_NUMBER = "+14155550199"
API_KEY_ENV = "PARLEY_API_KEY"


@dataclass(slots=True)
class PhoneRun:
    """What one call gave: per-turn results as heard, the greeting's delay, and the call's record."""

    turns: list[TurnResult] = field(default_factory=list)
    greeting_ms: float | None = None
    call: dict[str, Any] = field(default_factory=dict)
    caller: SimulatedCaller | None = None

    def summary(self) -> dict[str, Any]:
        v2v = [t.v2v_ms for t in self.turns if t.v2v_ms is not None]
        bargein = [t.bargein_ms for t in self.turns if t.bargein_ms is not None]
        return {
            "transport": "twilio",
            "turns": [asdict(t) for t in self.turns],
            "v2v_p50_ms": percentile(v2v, 50),
            "v2v_p90_ms": percentile(v2v, 90),
            "bargein_p50_ms": percentile(bargein, 50),
            "bargein_p90_ms": percentile(bargein, 90),
            "premature_cutins": sum(t.premature for t in self.turns),
            "greeting_ms": self.greeting_ms,
            "turn_count": len(self.turns),
            "call_id": self.call.get("id"),
        }


class PhoneConversation:
    """Drives one connected caller through the turns, waiting on what it hears, never on the server."""

    def __init__(self, caller: SimulatedCaller) -> None:
        self.caller = caller

    async def run(self, turns: list[UserTurn], answer_timeout_s: float = 30.0) -> PhoneRun:
        caller = self.caller
        result = PhoneRun(caller=caller)
        assert caller.started_at is not None
        greeting = await self._wait_reply(caller.started_at, answer_timeout_s)
        if greeting is not None:
            result.greeting_ms = round((greeting - caller.started_at) * 1000, 1)
        await self._wait_quiet(caller.started_at, answer_timeout_s)
        starts: list[tuple[float, PCM16]] = []
        for index, turn in enumerate(turns):
            pcm = resample(turn.audio.pcm, turn.audio.sample_rate, SAMPLE_RATE)
            start = await caller.say(pcm, SAMPLE_RATE)
            starts.append((start, pcm))
            upcoming = turns[index + 1] if index + 1 < len(turns) else None
            if upcoming is not None and upcoming.barge_in_at_ms is not None:
                if await self._wait_reply(start, answer_timeout_s) is not None:
                    await asyncio.sleep(upcoming.barge_in_at_ms / 1000)
            else:
                await self._wait_quiet(start, answer_timeout_s)
        result.turns = [self._score(start, pcm) for start, pcm in starts]
        return result

    def _reply_start(self, after: float) -> float | None:
        """When the first frame of agent audio heard after ``after`` began to play."""
        starts = [c.start for c in self.caller.heard if c.start >= after and len(c.pcm)]
        return min(starts) if starts else None

    async def _wait_reply(self, since: float, limit_s: float) -> float | None:
        deadline = now() + limit_s
        while now() < deadline and not self.caller.closed:
            start = self._reply_start(since)
            if start is not None and start <= now():
                return start
            await asyncio.sleep(0.01)
        return None

    async def _wait_quiet(self, since: float, limit_s: float) -> None:
        """Until a reply was heard after ``since`` and then nothing for ``QUIET_S`` (or the time is up)."""
        deadline = now() + limit_s
        while now() < deadline and not self.caller.closed:
            heard = [c for c in self.caller.heard if c.start >= since]
            if heard:
                last_end = max(c.start + len(c.pcm) / SAMPLE_RATE for c in heard)
                if now() - last_end >= QUIET_S:
                    return
            await asyncio.sleep(0.05)

    def _score(self, start: float, pcm: PCM16) -> TurnResult:
        onset, speech_end = voiced_span(pcm, SAMPLE_RATE, start)
        stop = self.caller.silent_at(onset)
        reply = self._reply_start(stop + 0.001 if stop is not None else onset)
        v2v = round((reply - speech_end) * 1000, 1) if reply is not None else None
        bargein = round((stop - onset) * 1000, 1) if stop is not None else None
        return TurnResult("", "", v2v, stop is not None, v2v is not None and v2v < 0, bargein)


def attach_transcript(run: PhoneRun, call: dict[str, Any], starts: list[float]) -> None:
    """Fill each turn's texts from the call record: what Parley heard and said, by time."""
    events = call.get("events", [])
    origin = _session_origin(events)
    if origin is None:
        return
    bounds = [*starts[1:], float("inf")]
    for turn, begin, end in zip(run.turns, starts, bounds, strict=True):

        def within(event: dict[str, Any], begin: float = begin, end: float = end) -> bool:
            t = origin + float(event["t_ms"]) / 1000
            return begin <= t < end

        finals = [e["data"]["text"] for e in events if e["type"] == "transcript.final" and within(e)]
        user = " ".join(t for i, t in enumerate(finals) if not any(f.startswith(t) for f in finals[i + 1 :]))
        agent = " ".join(e["data"]["text"] for e in events if e["type"] == "agent.text" and within(e))
        turn.user_text, turn.agent_text = user, agent


def _session_origin(events: list[dict[str, Any]]) -> float | None:
    """The server's monotonic time of its session start (events carry both ``t_ms`` and absolute times;
    ``time.monotonic`` is one clock for every process of a machine)."""
    for event in events:
        if event["type"] == "agent.audio.started" and "at" in event["data"]:
            return float(event["data"]["at"]) - float(event["t_ms"]) / 1000
    return None


_WORD = re.compile(r"[a-z0-9']+")


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    """Word errors (substitutions, insertions, deletions) over reference words, for the whole call."""
    ref = [w for text in references for w in _WORD.findall(text.lower())]
    hyp = [w for text in hypotheses for w in _WORD.findall(text.lower())]
    if not ref:
        return 0.0 if not hyp else 1.0
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / len(ref)


def mixdown(caller: SimulatedCaller) -> tuple[PCM16, PCM16]:
    """The call as the caller's line carried it: what they said (left) and heard (right), 8 kHz."""
    from parley.simulation import mix_stereo

    clips = [*caller.spoken, *caller.heard]
    if not clips:
        empty = np.zeros(0, np.int16)
        return empty, empty
    origin = caller.started_at if caller.started_at is not None else min(c.start for c in clips)
    end = max(c.start + len(c.pcm) / SAMPLE_RATE for c in clips)
    return mix_stereo(caller.spoken, caller.heard, origin, end, SAMPLE_RATE)


@contextlib.contextmanager
def phone_server(agent_path: Path | None = None) -> Iterator[tuple[str, str, Path]]:
    """A Parley server in a child process with Twilio on and a number routed to the agent: yields its
    base URL, the auth token Twilio signs with, and its data directory."""
    auth_token = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="parley-phone-") as data_dir:
        env = {
            "PARLEY_DATA_DIR": data_dir,
            "PARLEY_TWILIO_AUTH_TOKEN": auth_token,
            "PARLEY_TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
            API_KEY_ENV: "pk_bench_" + secrets.token_hex(12),
        }
        args = ["-m", "parley.bench.phone", "--serve", *([str(agent_path)] if agent_path else [])]
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with server_process(args) as (_, port):
                yield f"http://127.0.0.1:{port}", auth_token, Path(data_dir)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


async def fetch_call(base_url: str, call_id: str, limit_s: float = 10.0) -> dict[str, Any]:
    """The call's record once it has ended (the server writes it as the call closes)."""
    headers = {"Authorization": f"Bearer {os.environ.get(API_KEY_ENV, '')}"}
    deadline = now() + limit_s
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10.0) as client:
        while True:
            response = await client.get(f"/v1/calls/{call_id}")
            response.raise_for_status()
            call: dict[str, Any] = response.json()
            if call["status"] not in ("queued", "ringing", "in_progress") or now() > deadline:
                return call
            await asyncio.sleep(0.2)


def serve_phone(agent_path: str | None = None) -> None:
    """The server side: the embedded stack on a free port, Twilio on, the bench number routed to the
    agent; prints the port once the models are warm."""
    raise NotImplementedError  # wired once the phone-number service lands


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve_phone(*sys.argv[2:3])
    else:
        sys.exit("usage: python -m parley.bench.phone --serve [AGENT_YAML] (use `parley bench latency`)")
