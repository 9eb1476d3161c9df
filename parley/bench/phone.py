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
import json
import os
import re
import secrets
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from parley.audio.frame import PCM16
from parley.audio.resample import resample
from parley.bench.server_process import announce_port, server_process
from parley.engine.event_payloads import AgentAudioStarted, AgentText, StateChanged, TranscriptFinal
from parley.engine.events import EventType, now
from parley.simulate import TurnResult, UserTurn, caller_finals, turn_figures
from parley.simulation import voiced_span
from parley.twilio_sim.caller import SAMPLE_RATE, SimulatedCaller
from parley.twilio_sim.network import NetworkProfile

PARLEY_NUMBER = "+14155550100"
CALLER_NUMBER = "+14155550199"
API_KEY_ENV = "PARLEY_API_KEY"
PHONE_GREETING = "Hi, thanks for calling! How can I help you today?"
"""Spoken first by the benchmark's agent when its own agent has no ``first_message``."""


@dataclass(slots=True)
class PhoneRun:
    """What one call gave: per-turn results as heard, the greeting's delay, and the call's record."""

    turns: list[TurnResult] = field(default_factory=list)
    starts: list[tuple[float, PCM16]] = field(default_factory=list)
    """When each user turn began, and what was said (8 kHz)."""
    greeting_ms: float | None = None
    call: dict[str, Any] = field(default_factory=dict)
    caller: SimulatedCaller | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "transport": "twilio",
            **turn_figures(self.turns),
            "greeting_ms": self.greeting_ms,
            "turn_count": len(self.turns),
            "call_id": self.call.get("id"),
        }


class ServerFeed:
    """The call's timeline as Parley streams it (``GET /v1/calls/{id}/events``), so the caller knows when
    the agent is done with a turn exactly, as ``parley bench latency`` asks its in-process session."""

    def __init__(self, base_url: str, call_id: str, api_key: str | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._url = f"{base_url}/v1/calls/{call_id}/events"
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> ServerFeed:
        self._task = asyncio.create_task(self._follow(), name="phone-bench-feed")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _follow(self) -> None:
        headers = {"Authorization": f"Bearer {self._api_key}"}
        async with (
            httpx.AsyncClient(headers=headers, timeout=None, trust_env=False) as client,
            client.stream("GET", self._url) as response,
        ):
            response.raise_for_status()
            async for line in response.aiter_lines():
                if line.startswith("data:") and line[5:].strip() not in ("", "{}"):
                    self.events.append(json.loads(line[5:]))

    def idle(self) -> bool:
        """The agent answered the last thing heard and finished (or the words were nothing to answer)."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()  # the feed broke: say why instead of waiting out every turn
        last_speech = max((i for i, e in enumerate(self.events) if e["type"] == "speech.stopped"), default=-1)
        for event in reversed(self.events[last_speech + 1 :]):
            if event["type"] == EventType.STATE_CHANGED:
                return StateChanged.from_data(event["data"]).new == "listening"
        return False


_NOT_CONVERSATION = frozenset({"audio.underrun", "audio.input_overflow", "metrics"})
"""Events the transport reports on its own (a loaded machine adds them anywhere)."""


class PhoneConversation:
    """Drives one connected caller through the turns; Parley's timeline says when the agent is done, and
    every figure comes from what the caller heard."""

    def __init__(self, caller: SimulatedCaller, feed: ServerFeed, *, greeting: bool | None = None) -> None:
        self.caller = caller
        self.feed = feed
        self.greeting = greeting
        """Whether the agent speaks first (it has a ``first_message``); None: tell from its timeline."""

    async def run(self, turns: list[UserTurn], answer_timeout_s: float = 30.0) -> PhoneRun:
        caller = self.caller
        result = PhoneRun(caller=caller)
        assert caller.started_at is not None
        if self.greeting if self.greeting is not None else await self._greeting_expected():
            greeting = await self._wait_reply(caller.started_at, answer_timeout_s)
            if greeting is not None:
                result.greeting_ms = round((greeting - caller.started_at) * 1000, 1)
        await self._wait_quiet(answer_timeout_s)
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
                await self._wait_quiet(answer_timeout_s)
        result.starts = starts
        result.turns = [self._score(start, pcm) for start, pcm in starts]
        return result

    async def _greeting_expected(self) -> bool:
        """Whether the agent speaks first: its session starts with a reply (``agent.text`` early on)."""
        deadline = now() + 5.0
        while now() < deadline:
            kinds = [e["type"] for e in self.feed.events if e["type"] not in _NOT_CONVERSATION]
            if "agent.text" in kinds:
                return True
            if "session.started" in kinds and len(kinds) > kinds.index("session.started") + 2:
                return False
            await asyncio.sleep(0.02)
        return False

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
            await asyncio.sleep(0.005)
        return None

    def _hearing(self, at: float) -> bool:
        return any(c.start <= at < c.start + len(c.pcm) / SAMPLE_RATE + 0.3 for c in self.caller.heard[-20:])

    async def _wait_quiet(self, limit_s: float) -> None:
        """Until Parley says the agent is done and the caller has heard it all, twice 0.3 s apart."""
        deadline = now() + limit_s
        await asyncio.sleep(0.3)
        while now() < deadline and not self.caller.closed:
            if self.feed.idle() and not self._hearing(now()):
                await asyncio.sleep(0.3)
                if self.feed.idle() and not self._hearing(now()):
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

        user = " ".join(caller_finals((e["type"], e["data"]) for e in events if within(e)))
        agent = " ".join(_text(e) for e in events if e["type"] == EventType.AGENT_TEXT and within(e))
        turn.user_text, turn.agent_text = user, agent


def heard_user_texts(call: dict[str, Any]) -> list[str]:
    """Everything the caller said as Parley transcribed it, once: a turn that went on after a pause is
    final twice, and only its longer text counts."""
    return caller_finals((e["type"], e["data"]) for e in call.get("events", []))


def _text(event: dict[str, Any]) -> str:
    """The words of a ``transcript.final`` or ``agent.text`` event as the call record shows it."""
    cls = TranscriptFinal if event["type"] == EventType.TRANSCRIPT_FINAL else AgentText
    return cls.from_data(event["data"]).text


def _session_origin(events: list[dict[str, Any]]) -> float | None:
    """The server's monotonic time of its session start (events carry both ``t_ms`` and absolute times;
    ``time.monotonic`` is one clock for every process of a machine)."""
    for event in events:
        if event["type"] == EventType.AGENT_AUDIO_STARTED:
            at = AgentAudioStarted.from_data(event["data"]).at
            if at is not None:
                return at - float(event["t_ms"]) / 1000
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
def phone_server(
    agent_path: Path | None = None, *, keep_calls: bool = False, greet: bool = False
) -> Iterator[tuple[str, str, Path | None]]:
    """A Parley server in a child process with Twilio on and a number routed to the agent: yields its
    base URL, the auth token Twilio signs with, and its data directory (a temporary one, unless
    ``keep_calls``: then the configured store keeps the call, as ``parley simulate`` does)."""
    auth_token = secrets.token_hex(16)
    with contextlib.ExitStack() as scope:
        data_dir = None if keep_calls else scope.enter_context(tempfile.TemporaryDirectory(prefix="parley-"))
        env = {
            "PARLEY_TWILIO_AUTH_TOKEN": auth_token,
            "PARLEY_TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
            API_KEY_ENV: "pk_bench_" + secrets.token_hex(12),
        }
        if data_dir is not None:
            env["PARLEY_DATA_DIR"] = data_dir
        args = ["-m", "parley.bench.phone", "--serve", *([str(agent_path)] if agent_path else [])]
        args += ["--greet"] if greet else []
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with server_process(args) as (_, port):
                yield f"http://127.0.0.1:{port}", auth_token, Path(data_dir) if data_dir else None
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


async def fetch_call(
    base_url: str, call_id: str, limit_s: float = 10.0, api_key: str | None = None
) -> dict[str, Any]:
    """The call's record once it has ended (the server writes it as the call closes)."""
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")
    headers = {"Authorization": f"Bearer {key}"}
    deadline = now() + limit_s
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10.0, trust_env=False) as client:
        while True:
            response = await client.get(f"/v1/calls/{call_id}")
            response.raise_for_status()
            call: dict[str, Any] = response.json()
            if call["status"] not in ("queued", "ringing", "in_progress") or now() > deadline:
                return call
            await asyncio.sleep(0.2)


def serve_phone(agent_path: str | None = None, *, greet: bool = False) -> None:
    """The server side: the embedded stack on a free port, Twilio on, the bench number routed to the
    agent; prints the port once the models are warm."""
    from parley.config import Settings
    from parley.engine.agent import default_agent, load_agent
    from parley.platform.agents import NotFound
    from parley.server.app import create_platform_app
    from parley.server.lifecycle import DrainingServer, bound_port, make_server
    from parley.server.stacks import AgentCatalog

    settings = Settings()
    agent = load_agent(Path(agent_path)) if agent_path else default_agent()
    if greet and not agent.first_message:  # a phone agent speaks first: the bench times its greeting
        agent = agent.model_copy(update={"first_message": PHONE_GREETING})
    app = create_platform_app(settings, catalog=AgentCatalog([agent]))

    async def announce(server: DrainingServer) -> None:
        await app.state.runtime.engines.ready.wait()
        platform = app.state.platform
        org = platform.default_org_id
        stored, _version = await platform.agents.ensure(org, agent)
        # The number is fictional (555-01xx): in a kept store it is pointed at this run's agent again.
        with contextlib.suppress(NotFound):
            await platform.phone.remove_number(org, PARLEY_NUMBER)
        await platform.phone.add_number(org, PARLEY_NUMBER, stored.id, "parley simulate / bench")
        announce_port(bound_port(server))

    make_server(app, settings, host="127.0.0.1", port=0, log_level="warning", on_started=announce).run()


async def phone_call(
    base_url: str,
    auth_token: str,
    turns: list[UserTurn],
    *,
    network: NetworkProfile | None = None,
    answer_timeout_s: float = 30.0,
    greeting: bool | None = None,
) -> PhoneRun:
    """One inbound call from the local Twilio to the bench number: the turns, then a hang-up; the
    call's record is read back from Parley once it has ended."""
    from parley.twilio_sim.server import TwilioSim, serving

    async with serving(TwilioSim(auth_token=auth_token, network=network)) as sim:
        call = sim.place_inbound(CALLER_NUMBER, PARLEY_NUMBER, f"{base_url}/twilio/voice")
        caller = await call.wait_connected(answer_timeout_s)
        call_id = caller.custom_parameters["call_id"]
        async with ServerFeed(base_url, call_id) as feed:
            run = await PhoneConversation(caller, feed, greeting=greeting).run(turns, answer_timeout_s)
        await caller.hang_up()
        await call.wait_ended()
    run.call = await fetch_call(base_url, call_id)
    attach_transcript(run, run.call, [start for start, _ in run.starts])
    return run


async def run_phone_latency_bench(
    progress: Any = None, *, loss: float = 0.0, jitter_ms: float = 0.0, agent_path: Path | None = None
) -> dict[str, Any]:
    """``parley bench latency --transport twilio``: the latency bench's questions over a phone call."""
    from parley.bench.latency import build_turns
    from parley.bench.voice import CallerVoice

    say = progress if progress is not None else (lambda *_: None)
    say("synthesizing the questions …")
    # The same takes every run: a clean and an impaired run then differ by the network alone.
    turns = await asyncio.to_thread(build_turns, CallerVoice(varied=False))
    network = NetworkProfile(loss=loss, jitter_ms=jitter_ms, seed=7) if loss or jitter_ms else None
    say("starting the server with the embedded stack and Twilio webhooks (a separate process) …")
    with phone_server(agent_path, greet=True) as (base_url, auth_token, _):
        impaired = f" through {loss:.0%} loss and {jitter_ms:g} ms jitter" if network else ""
        say(f"calling {PARLEY_NUMBER} from the local Twilio: {len(turns)} user turns{impaired} …")
        run = await phone_call(base_url, auth_token, turns, network=network, greeting=True)
    report = run.summary()
    report["user_wer"] = round(word_error_rate([t.text for t in turns], heard_user_texts(run.call)), 3)
    report["network"] = {"loss": loss, "jitter_ms": jitter_ms}
    if run.caller is not None:
        stats = run.caller.network_stats
        report["caller"] = {
            "marks_echoed": run.caller.marks_echoed,
            "marks_cleared": run.caller.marks_cleared,
            "clears": run.caller.clears_received,
            "packets_lost": stats.lost,
        }
    return report


async def run_phone_simulation(
    agent_path: Path | None,
    wavs: list[Path],
    out: Path,
    barge_in_at_ms: float | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """``parley simulate --transport twilio``: each WAV a user turn of an inbound phone call; writes
    the call as the caller's line carried it (``conversation.wav``: said left, heard right, 8 kHz), the
    summary (``transcript.json``) and the call's events as Parley recorded them (``events.jsonl``)."""
    from parley.audio.wav import read_wav
    from parley.simulate import DEMO_QUESTIONS

    say = progress.print if progress is not None else (lambda *_: None)
    if wavs:
        audio = [(read_wav(path), "") for path in wavs]
    else:
        from parley.bench.voice import CallerVoice

        say("no --say files given: synthesizing two demo questions")
        voice = await asyncio.to_thread(CallerVoice, varied=False)
        audio = [(await asyncio.to_thread(voice.say, q), q) for q in DEMO_QUESTIONS]
    turns = [
        UserTurn(frame, barge_in_at_ms if i and barge_in_at_ms is not None else None, text)
        for i, (frame, text) in enumerate(audio)
    ]
    say("starting the server with its models and Twilio webhooks (a separate process) …")
    with phone_server(agent_path, keep_calls=True) as (base_url, auth_token, _):
        say(f"calling {PARLEY_NUMBER} from the local Twilio: {len(turns)} user turn(s) in real time …")
        run = await phone_call(base_url, auth_token, turns)
    summary = run.summary()
    await asyncio.to_thread(_write_call, out, run, summary)
    say(f"wrote {out / 'conversation.wav'}, {out / 'transcript.json'}, {out / 'events.jsonl'}")
    if summary["call_id"]:
        say(f"recorded as call {summary['call_id']}: parley calls show {summary['call_id']}")
    return summary


def _write_call(out: Path, run: PhoneRun, summary: dict[str, Any]) -> None:
    import json

    from parley.audio.wav import write_wav

    out.mkdir(parents=True, exist_ok=True)
    if run.caller is not None:
        write_wav(out / "conversation.wav", list(mixdown(run.caller)), SAMPLE_RATE)
    (out / "transcript.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    with (out / "events.jsonl").open("w", encoding="utf-8") as events:
        for event in run.call.get("events", []):
            events.write(json.dumps(event, default=str) + "\n")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        rest = sys.argv[2:]
        serve_phone(next((a for a in rest if a != "--greet"), None), greet="--greet" in rest)
    else:
        sys.exit("usage: python -m parley.bench.phone --serve [AGENT_YAML] (use `parley bench latency`)")
