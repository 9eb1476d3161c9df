"""``parley bench load``: many concurrent WebSocket sessions, to measure Parley's own overhead.

The server runs in its own process with the fast deterministic engines (energy VAD, scripted ASR and
LLM, tone TTS), so what it spends is Parley's: framing, queues, pacing, the event loop. The clients run
in this process and talk to it over loopback like remote users: each streams its microphone in real
time, asks a question, listens to the answer, pauses, asks again.

Per level of concurrency it reports server CPU and memory per session, outbound audio underruns, and
the lateness of outbound frames:

- lateness: arrival minus the time the frame was due to leave (its play time minus ``lead_ms``; the
  first frames of a reply are due at once, when the reply starts);
- client underruns: frames that arrived after a client playing the reply continuously from its first
  frame (plus ``PLAYOUT_MARGIN_S``) needed them, i.e. gaps a listener would hear;
- engine underruns: frames the engine itself wrote more than 30 ms late (``audio.underrun``).

Client and server share the machine's monotonic clock, so these are exact. Everything the client
process does is kept light (one ticker streams every microphone, spread over the frame period; no
HTTP client is built mid-measurement), because a stalled client loop would show up as lateness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import sys
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import psutil
from websockets.exceptions import ConnectionClosed

from parley.audio.frame import PCM16
from parley.audio.vad import EnergyVAD
from parley.bench.server_process import announce_port, server_process
from parley.engine.agent import AgentConfig, EndpointingSettings
from parley.engine.events import now
from parley.engine.session import EngineStack
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.llm.scripted import ScriptedModel
from parley.providers.tts.tone import ToneSynthesizer
from parley.transports.ws_client import LiveClient, ReceivedFrame, StreamingMic

RATE = 16000
QUESTION = "What is the capital of France?"
ANSWER = "Paris is the capital of France and it is lovely in the spring."  # one clause: 3.1 s of tone
"""One clause on purpose: today the engine waits until a clause has played out before it hands over
the next one, so the first frames of every later clause leave with no lead whatever the load (see
docs/protocol.md, "Timing"). That is a fixed cost per clause, not load; this benchmark measures load."""
PLAYOUT_MARGIN_S = 0.010
"""A client starts playing a reply this long after its first frame arrives (a render quantum or so)."""
SERVER_CMD = ["-m", "parley.bench.load"]


# --- the server side ----------------------------------------------------------------------------------


class EndlessScript(ScriptedRecognizer):
    """Hears the same question every time, however many turns a benchmark runs."""

    def take(self) -> str:
        return QUESTION

    def peek(self) -> str | None:
        return QUESTION


def fast_stack() -> EngineStack:
    return EngineStack(
        vad_factory=lambda: EnergyVAD(RATE, frame_ms=32, threshold_dbfs=-35.0),
        recognizer=EndlessScript([QUESTION]),
        llm=ScriptedModel([], default_reply=ANSWER),
        tts=ToneSynthesizer(RATE, ms_per_char=50.0),
    )


def load_agent() -> AgentConfig:
    return AgentConfig(
        name="load",
        public=True,
        endpointing=EndpointingSettings(
            min_silence_ms=200, unsure_silence_ms=500, max_silence_ms=900, semantic=False
        ),
    )


def serve_fast(max_sessions: int) -> None:
    """Run a server with the fast engines on a free port; prints the port when it listens."""
    from parley.config import Settings
    from parley.server.app import create_app
    from parley.server.lifecycle import DrainingServer, bound_port, make_server
    from parley.server.stacks import AgentCatalog

    engines = fast_stack()

    async def factory(_: AgentConfig) -> EngineStack:
        return engines

    # Every simulated caller comes from this machine's one address, and waits its turn to speak.
    settings = Settings(
        _env_file=None,
        max_concurrent_sessions=max_sessions,
        session_idle_timeout_s=600,
        max_sessions_per_ip=max_sessions,
        max_connections_per_ip=2 * max_sessions,
        session_start_timeout_s=600,
    )
    app = create_app(settings, catalog=AgentCatalog([load_agent()]), stack_factory=factory)

    async def announce(server: DrainingServer) -> None:
        announce_port(bound_port(server))

    make_server(app, settings, host="127.0.0.1", port=0, log_level="warning", on_started=announce).run()


# --- the client side ----------------------------------------------------------------------------------


@dataclass
class Stats:
    lateness_ms: list[float] = field(default_factory=list)
    """Arrival minus the time the frame was due to leave: play time minus lead, or the reply's start
    for the first frames of a reply (sent at once by design)."""
    late_frames: int = 0
    """Frames that arrived after a client playing the reply continuously would have needed them."""
    frames: int = 0
    replies: int = 0
    errors: int = 0

    def reset(self) -> None:
        self.lateness_ms.clear()
        self.late_frames = self.frames = self.replies = self.errors = 0


class LoadClient:
    """One simulated caller: asks, listens to the whole answer, pauses, asks again."""

    def __init__(self, url: str, stats: Stats, question: PCM16, seed: int) -> None:
        self.url = url
        self.stats = stats
        self.question = question
        self.random = random.Random(seed)
        self.client: LiveClient | None = None
        self.mic: StreamingMic | None = None
        self.lead_s = 0.0
        self._task: asyncio.Task[None] | None = None
        self._run_start = 0.0
        self._run_end: float | None = None
        self._offset = 0.0

    def _on_audio(self, frame: ReceivedFrame) -> None:
        """Score a frame against a client playing each reply continuously from its first frame."""
        play = frame.play_ms / 1000
        if self._run_end is None or abs(play - self._run_end) > 0.001:  # a new reply (or one resumed)
            self._run_start, self._offset = play, frame.arrival - play + PLAYOUT_MARGIN_S
        self._run_end = play + len(frame.pcm) / RATE
        self.stats.frames += 1
        self.stats.lateness_ms.append((frame.arrival - max(play - self.lead_s, self._run_start)) * 1000)
        if frame.arrival > play + self._offset:
            self.stats.late_frames += 1

    async def open(self) -> None:
        self.client = await LiveClient.connect(self.url, on_audio=self._on_audio)
        started = await self.client.start()
        if started["type"] != "session.started":
            raise RuntimeError(f"session refused: {started}")
        self.lead_s = started["audio_out"]["lead_ms"] / 1000
        self.mic = StreamingMic(self.client, RATE)
        self._task = asyncio.create_task(self._converse())

    async def _converse(self) -> None:
        assert self.client is not None and self.mic is not None
        client, mic = self.client, self.mic
        await asyncio.sleep(self.random.uniform(0.0, 2.0))
        while not client.closed:
            mark = len(client.messages)
            await mic.say(self.question)
            try:
                await client.wait_for("agent.audio", 20.0, since=mark, status="stopped")
                self.stats.replies += 1
            except TimeoutError:
                self.stats.errors += 1
            await asyncio.sleep(self.random.uniform(0.5, 1.5))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.client is not None:
            with contextlib.suppress(ConnectionClosed, OSError):  # the server may have closed first
                await self.client.send({"type": "end"})
            await self.client.close()


async def _tick(clients: list[LoadClient], frame_s: float = 0.02, phases: int = 5) -> None:
    """One ticker streams every client's microphone, so the client process stays light.

    Clients are spread over ``phases`` slots of the frame period, as independent callers would be;
    sending all frames in one burst per period would measure a thundering herd, not a server.
    """
    step = frame_s / phases
    t = now()
    phase = 0
    while True:
        t += step
        delay = t - now()
        if delay > 0:
            await asyncio.sleep(delay)
        for load_client in clients[phase::phases]:
            mic, client = load_client.mic, load_client.client
            if mic is None or client is None or client.closed:
                continue
            pcm = mic.next_frame(t - frame_s)
            with contextlib.suppress(ConnectionClosed, OSError):  # closed since the check above
                await client.send_audio(pcm, (t - frame_s) * 1000)
        phase = (phase + 1) % phases


def _question() -> PCM16:
    t = np.arange(int(1.2 * RATE)) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    return np.concatenate([np.zeros(RATE // 10, np.int16), tone, np.zeros(RATE // 10, np.int16)])


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


async def run_load(
    levels: list[int], measure_s: float = 20.0, ramp_per_s: float = 40.0, progress: Any = None
) -> dict[str, Any]:
    """Ramp up to each level in turn, measure for ``measure_s``, and report per level and the knee."""
    say = progress if progress is not None else (lambda *_: None)
    results: list[dict[str, Any]] = []
    with server_process([*SERVER_CMD, "--serve", str(max(levels) + 10)]) as (child, port):
        url = f"ws://127.0.0.1:{port}/v1/sessions/ws"
        probe = _Probe(psutil.Process(child.pid), port)
        await asyncio.sleep(1.0)
        rss0 = probe.server.memory_info().rss
        stats, clients = Stats(), list[LoadClient]()
        ticker = asyncio.create_task(_tick(clients))
        question = _question()
        try:
            for level in sorted(levels):
                say(f"ramping to {level} sessions …")
                while len(clients) < level:
                    load_client = LoadClient(url, stats, question, seed=len(clients))
                    await load_client.open()
                    clients.append(load_client)
                    await asyncio.sleep(1 / ramp_per_s)
                await asyncio.sleep(3.0)  # let the ramp settle
                say(f"measuring {level} sessions for {measure_s:.0f} s …")
                results.append(await probe.measure(level, stats, measure_s, rss0))
                say(f"  {results[-1]}")
        finally:
            ticker.cancel()
            await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return {
        "levels": results,
        "knee_sessions": _knee(results),
        "cpu_count": os.cpu_count(),
        "lead_ms": round(clients[0].lead_s * 1000) if clients else None,
    }


class _Probe:
    """Resource use of the server process (and of everything else on the machine) over a window."""

    def __init__(self, server: psutil.Process, port: int) -> None:
        self.server = server
        self.me = psutil.Process(os.getpid())
        self.host, self.port = "127.0.0.1", port

    async def _underruns(self) -> float:
        # A plain request on a fresh socket: building an HTTP client (TLS context and all) would stall
        # this loop for a tenth of a second and show up as frame lateness.
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: bench\r\n\r\n")
        text = (await reader.read()).decode()
        writer.close()
        found = re.search(r"^parley_audio_underruns_total ([0-9.e+]+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0

    async def measure(self, level: int, stats: Stats, seconds: float, rss0: int) -> dict[str, Any]:
        underruns0 = await self._underruns()
        stats.reset()
        server0, me0, all0, t0 = self._cpu(self.server), self._cpu(self.me), _machine_cpu(), now()
        await asyncio.sleep(seconds)
        elapsed = now() - t0
        server = (self._cpu(self.server) - server0) / elapsed
        client = (self._cpu(self.me) - me0) / elapsed
        others = max(0.0, (_machine_cpu() - all0) / elapsed - server - client)
        rss = self.server.memory_info().rss
        lateness = list(stats.lateness_ms)
        late_frames = stats.late_frames
        return {
            "sessions": level,
            "server_cpu_percent": round(server * 100, 1),
            "cpu_ms_per_session_per_s": round(server * 1000 / level, 2),
            "memory_mb_per_session": round((rss - rss0) / level / 2**20, 3),
            "server_rss_mb": round(rss / 2**20, 1),
            "outbound_frames": stats.frames,
            "frame_lateness_p50_ms": _percentile(lateness, 50),
            "frame_lateness_p99_ms": _percentile(lateness, 99),
            "frame_lateness_max_ms": round(max(lateness), 1) if lateness else None,
            "client_underruns": late_frames,
            "engine_underruns": int(await self._underruns() - underruns0),
            "replies": stats.replies,
            "reply_timeouts": stats.errors,
            "client_cpu_percent": round(client * 100, 1),
            "other_processes_cpu_percent": round(others * 100, 1),
        }

    @staticmethod
    def _cpu(process: psutil.Process) -> float:
        times = process.cpu_times()
        return float(times.user + times.system)


def _machine_cpu() -> float:
    times = psutil.cpu_times()
    return float(
        times.user
        + times.system
        + getattr(times, "nice", 0.0)
        + getattr(times, "irq", 0.0)
        + getattr(times, "softirq", 0.0)
    )


def _knee(results: list[dict[str, Any]]) -> int | None:
    """The highest level that still met the target (no underruns, p99 lateness under 20 ms)."""
    good = [
        r["sessions"]
        for r in results
        if r["client_underruns"] == 0
        and r["engine_underruns"] == 0
        and (r["frame_lateness_p99_ms"] or 0) < 20.0
        and r["reply_timeouts"] == 0
    ]
    return max(good) if good else None


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve":
        serve_fast(int(sys.argv[2]))
    else:
        sys.exit("usage: python -m parley.bench.load --serve MAX_SESSIONS (use `parley bench load`)")
