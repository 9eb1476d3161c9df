"""``parley bench coach`` through real legs: each scripted call is a coached room on a Parley server in a
child process, and the customer, the rep and a listening coach are WebSocket legs, as browsers would be.

The server (``python -m parley.bench.coach_ws --serve``) runs the embedded stack (Whisper tiny, the
default LLM, Piper) on its own temporary data directory and SQLite database, with an API key made for
this run (passed in its environment, never on its command line). Per call the bench creates an agent
with coaching on (whispered hints included) and a room with it over the REST API, invites the three
participants and joins each over ``/v1/rooms/{id}/ws``. Piper's lines go into the customer's and the
rep's sockets in real time, 20 ms a frame with silence between lines, as a microphone sends them.

Everything is measured on what the sockets received, on the one clock both processes share (the
machine's monotonic clock; a room frame's timestamp is its room tick on that clock):

- hint latency: from when the 20 ms holding the last voiced sample of the line that fired a trigger was
  written to its socket, to the card's arrival on the rep's socket. Which line fired which trigger is
  read afterwards from the call's timeline (``GET /v1/calls/{id}``: ``coach.trigger`` has the words);
- whisper leak: each line as sent is found in a listener's downlink by cross-correlation (the wire and
  the room's jitter buffer delay it by an amount the client cannot know), so what each listener should
  have received is rebuilt sample for sample. The whisper is what the rep received beyond the
  customer's voice after a whispered card arrived; over those spans, whatever the customer received
  beyond the rep's voice is the leak, and the rep's own excess (``whisper_to_rep_dbfs``) shows that the
  whisper did play;
- what the listening coach received of each side where that side spoke alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed

from parley.audio.energy import rms_dbfs
from parley.audio.frame import PCM16
from parley.audio.resample import resample
from parley.bench.coach import (
    GAP_S,
    LEAK_DBFS,
    SETTLE_S,
    UTTERANCE_TIMEOUT_S,
    _heard_alone,
    _merged,
    _report,
    _residual,
    _Said,
)
from parley.bench.coach_cases import CALLS, SalesCall
from parley.bench.server_process import announce_port, server_process
from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import CoachTrigger
from parley.engine.events import Event, EventType, now
from parley.engine.options import EngineStack
from parley.rooms.model import ROOM_RATE, TICK_S, TICK_SAMPLES
from parley.transports.ws_client import LiveClient, ReceivedFrame

RATE = ROOM_RATE
"""Every leg sends and receives at the room's own rate, so no resampler stands between sent and heard."""
SERVE_ARGS = ["-m", "parley.bench.coach_ws", "--serve"]
BENCH_AGENT = "coach-bench"
ROLES = ("customer", "rep", "coach")
VOICED = 300
"""A sample louder than this is speech (as in the in-process bench)."""
MAX_LAG_S = 1.0
"""How late a line may reach a listener: the room keeps at most a second of a leg's audio waiting."""
MIN_MATCH = 0.5
"""Normalized correlation below which a line is taken as not found in a listener's downlink."""
WHISPER_DBFS = -50.0
"""A 20 ms the rep received this far above the customer's voice is whisper."""
WHISPER_MAX_S = 15.0
"""How long after its card a whisper may start (queued behind others)."""
WHISPER_PAUSE_S = 1.0
"""Silence that ends a whisper: longer than any pause between its words."""
QUIET_LIMIT_S = 20.0
HTTP_TIMEOUT_S = 120.0
"""A room's first creation for an agent prepares its models (the LLM primes its prompt)."""
JOIN_TIMEOUT_S = 10.0
TIMELINE_TIMEOUT_S = 15.0
FAST_REWRITE = "Ask what they compare the price with."
"""The scripted model's rewrite of every card, with the fast engines."""

Voice = Callable[[str, str], PCM16]
"""``(role, text)`` to 16 kHz speech."""


# --- the server side ----------------------------------------------------------------------------------


def fast_stack(lines: list[str]) -> EngineStack:
    """The test suite's tiny deterministic engines: an energy VAD, a recogniser that hears ``lines`` in
    order, a scripted model and a tone voice (the whisper is a 440 Hz tone)."""
    from parley.audio.vad import EnergyVAD
    from parley.providers.asr.scripted import ScriptedRecognizer
    from parley.providers.llm.scripted import ScriptedModel
    from parley.providers.tts.tone import ToneSynthesizer

    return EngineStack(
        vad_factory=lambda: EnergyVAD(RATE, frame_ms=32, threshold_dbfs=-35.0),
        recognizer=ScriptedRecognizer(lines),
        llm=ScriptedModel([], default_reply=FAST_REWRITE),
        tts=ToneSynthesizer(RATE, ms_per_char=10.0),
    )


def serve(script: Path | None = None) -> None:
    """The server: the full app (store, REST, rooms) on a free port of loopback; prints the port once the
    models are warm. Storage is this run's own whatever the environment or ``.env`` say: the data
    directory the bench made (``PARLEY_DATA_DIR``), SQLite in it, the timeline in-process, artifacts on
    disk. With ``script`` (a JSON list of lines) it runs the fast engines instead of the embedded ones."""
    from parley.config import Settings
    from parley.server.app import create_platform_app
    from parley.server.lifecycle import DrainingServer, bound_port, make_server
    from parley.server.stacks import AgentCatalog, StackFactory

    settings = Settings(database_url=None, redis_url=None, s3_bucket=None, shutdown_grace_s=2.0)
    factory: StackFactory | None = None
    if script is not None:
        engines = fast_stack([str(line) for line in json.loads(script.read_text(encoding="utf-8"))])

        async def fast(_: AgentConfig) -> EngineStack:
            return engines

        factory = fast
    # The one agent warmed before the port is announced: the default models every bench agent uses.
    catalog = AgentCatalog([AgentConfig(name=BENCH_AGENT)])
    app = create_platform_app(settings, catalog=catalog, stack_factory=factory)

    async def announce(server: DrainingServer) -> None:
        await app.state.runtime.engines.ready.wait()
        announce_port(bound_port(server))

    make_server(app, settings, host="127.0.0.1", port=0, log_level="warning", on_started=announce).run()


# --- the participants -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sent:
    """One line as its socket sent it."""

    role: str
    pcm: PCM16
    captured: float
    """When its first sample was captured (the microphone's clock, which is the machine's)."""


class _Microphone:
    """A participant's microphone on its socket: 20 ms frames on the monotonic clock, each sent once its
    last sample is captured; silence between lines, as a browser sends it."""

    def __init__(self, client: LiveClient) -> None:
        self._client = client
        self._lines: asyncio.Queue[tuple[PCM16, asyncio.Future[tuple[float, float]]]] = asyncio.Queue()

    async def say(self, pcm: PCM16) -> tuple[float, float]:
        """Speak ``pcm`` next. Returns when its first sample was captured, and when the frame holding its
        last voiced sample was written to the socket (the end of its speech as sent)."""
        done: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()
        self._lines.put_nowait((pcm, done))
        return await done

    async def run(self) -> None:
        silence = np.zeros(TICK_SAMPLES, np.int16)
        start = now()
        frames = 0
        current: tuple[PCM16, asyncio.Future[tuple[float, float]]] | None = None
        offset = last_voiced = 0
        captured = speech_end = 0.0
        try:
            while True:
                t = start + frames * TICK_S
                if current is None and not self._lines.empty():
                    current = self._lines.get_nowait()
                    voiced = np.flatnonzero(np.abs(current[0].astype(np.int32)) > VOICED)
                    offset, last_voiced = 0, int(voiced[-1]) if voiced.size else 0
                    captured = speech_end = t
                frame = silence
                if current is not None:
                    frame = current[0][offset : offset + TICK_SAMPLES]
                    if frame.size < TICK_SAMPLES:
                        frame = np.concatenate([frame, silence[frame.size :]])
                delay = t + TICK_S - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                await self._client.send_audio(frame, t * 1000)
                frames += 1
                if current is None:
                    continue
                if offset <= last_voiced < offset + TICK_SAMPLES:
                    speech_end = now()
                offset += TICK_SAMPLES
                if offset >= current[0].size:
                    current[1].set_result((captured, speech_end))
                    current = None
        except ConnectionClosed:
            if current is not None:
                current[1].set_exception(ConnectionError("the socket closed in the middle of a line"))


async def _join(url: str, ear: Callable[[ReceivedFrame], None]) -> LiveClient:
    client = await LiveClient.connect(url, on_audio=ear)
    await client.send({"type": "start", "sample_rate": RATE})
    ready = await client.wait_for(("ready", "error"), JOIN_TIMEOUT_S)
    if ready["type"] != "ready":
        await client.close()
        raise RuntimeError(f"the room refused a participant: {ready}")
    return client


async def _created(request: Awaitable[httpx.Response]) -> dict[str, Any]:
    answer = await request
    if answer.status_code != 201:
        raise RuntimeError(
            f"{answer.request.method} {answer.request.url.path}: {answer.status_code} {answer.text}"
        )
    return dict(answer.json())


# --- one call -------------------------------------------------------------------------------------------


async def run_ws_coach_bench(
    say: Callable[[str], None] = lambda _: None,
    *,
    use_llm: bool = True,
    calls: Sequence[SalesCall] = CALLS,
    fast: bool = False,
    gap_s: float = GAP_S,
    settle_s: float = SETTLE_S,
) -> dict[str, Any]:
    """The bench over WebSocket legs. ``fast`` (tests): the server runs the tiny deterministic engines
    and the callers speak tones instead of Piper."""
    voice: Voice = _tone
    if not fast:
        say("loading the callers' voice (Piper) …")
        voice = await asyncio.to_thread(_piper)
    say("synthesizing the script …")
    # Every line before the calls start: a gap while Piper works would be dead air.
    audios = [[await asyncio.to_thread(voice, line.role, line.text) for line in call.lines] for call in calls]
    key = f"pk_bench_{secrets.token_urlsafe(24)}"
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="parley-coach-bench-") as scratch:
        data = Path(scratch) / "data"
        data.mkdir()
        env = {**os.environ, "PARLEY_DATA_DIR": str(data), "PARLEY_API_KEY": key}
        args = list(SERVE_ARGS)
        if fast:
            script = Path(scratch) / "script.json"
            script.write_text(
                json.dumps([line.text for call in calls for line in call.lines]), encoding="utf-8"
            )
            args += ["--fast", str(script)]
        engines = "fast deterministic" if fast else "embedded"
        say(f"starting a server with the {engines} engines (a child process with its own data dir) …")
        with server_process(args, env=env) as (_, port):
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=HTTP_TIMEOUT_S,
            ) as http:
                for call, lines in zip(calls, audios, strict=True):
                    say(f"call {call.name}: {len(call.lines)} lines in real time over WebSocket legs …")
                    results.append(await _run_call(http, call, lines, use_llm, gap_s, settle_s))
    return _report(results, use_llm, legs="websocket")


def _piper() -> Voice:
    from parley.bench.voice import CallerVoice

    caller = CallerVoice(varied=False)

    def speak(_role: str, text: str) -> PCM16:
        line = caller.say(text)
        return resample(line.pcm, line.sample_rate, RATE)

    return speak


def _tone(role: str, text: str) -> PCM16:
    """A stand-in line for the fast engines: a tone the energy VAD hears, 100 ms of silence either side."""
    hz = 220.0 if role == "customer" else 330.0
    t = np.arange(int(0.6 * RATE)) / RATE
    body = (0.3 * np.sin(2 * np.pi * hz * t) * 32767).astype(np.int16)
    pad = np.zeros(int(0.1 * RATE), np.int16)
    return np.concatenate([pad, body, pad])


async def _run_call(
    http: httpx.AsyncClient,
    call: SalesCall,
    audios: list[PCM16],
    use_llm: bool,
    gap_s: float,
    settle_s: float,
) -> dict[str, Any]:
    agent = f"{BENCH_AGENT}-{call.name}"
    coaching = {
        "enabled": True,
        "competitors": list(call.competitors),
        "use_llm": use_llm,
        "whisper_hints": True,
    }
    await _created(
        http.post("/v1/agents", json={"name": agent, "config": {"name": agent, "coaching": coaching}})
    )
    room = await _created(http.post("/v1/rooms", json={"agent": agent, "name": call.name}))
    ears: dict[str, list[ReceivedFrame]] = {role: [] for role in ROLES}
    clients: dict[str, LiveClient] = {}
    talking: list[asyncio.Task[None]] = []
    said: list[_Said] = []
    sent: list[_Sent] = []
    try:
        for role in ROLES:  # the coach listens: the room's default for a coach
            invitation = await _created(
                http.post(f"/v1/rooms/{room['id']}/participants", json={"role": role})
            )
            clients[role] = await _join(str(invitation["ws_url"]), ears[role].append)
        mics = {role: _Microphone(clients[role]) for role in ("customer", "rep")}
        talking = [asyncio.create_task(mic.run()) for mic in mics.values()]
        rep = clients["rep"]
        for index, (line, pcm) in enumerate(zip(call.lines, audios, strict=True)):
            mark = len(rep.messages)
            captured, speech_end = await mics[line.role].say(pcm)
            sent.append(_Sent(line.role, pcm, captured))
            said.append(_Said(index, line.role, line.expect, speech_end))
            said[-1].text = await _utterance(rep, line.role, mark)
            await asyncio.sleep(gap_s)
        await asyncio.sleep(settle_s)
        await _whispers_done(rep, ears["rep"])
    finally:
        for task in talking:
            task.cancel()
        await asyncio.gather(*talking, return_exceptions=True)
        # As a supervisor ends a call: everyone gets ``ended`` and the server closes the sockets.
        with contextlib.suppress(httpx.HTTPError):
            await http.post(f"/v1/rooms/{room['id']}/end")
        for client in clients.values():
            await client.close()
    cards = clients["rep"].of_type("hint")
    whispered = [float(m["_arrival"]) for m in cards if m.get("whisper") and not m.get("refines")]
    return {
        "name": call.name,
        "lines": said,
        "events": _events(await _timeline(http, str(room["call_id"])), cards),
        **_audio_figures(ears, sent, whispered),
    }


async def _utterance(rep: LiveClient, role: str, since: int) -> str:
    """The transcript of the line just spoken, as the rep's socket got it."""
    try:
        message = await rep.wait_for("utterance", UTTERANCE_TIMEOUT_S, since=since, role=role)
    except TimeoutError:
        return ""
    return str(message["text"])


async def _whispers_done(rep: LiveClient, ear: list[ReceivedFrame]) -> None:
    """Until the AI coach has nothing left to say: no card for a second, and the rep's ear quiet for half
    a second (nobody speaks by now, so anything the rep hears is a whisper)."""
    deadline = now() + QUIET_LIMIT_S
    while now() < deadline:
        cards = rep.of_type("hint")
        calm = not cards or now() - float(cards[-1]["_arrival"]) >= 1.0
        recent = ear[-int(0.5 / TICK_S) :]
        if calm and (not recent or rms_dbfs(np.concatenate([f.pcm for f in recent])) <= LEAK_DBFS):
            return
        await asyncio.sleep(0.1)


async def _timeline(http: httpx.AsyncClient, call_id: str) -> list[dict[str, Any]]:
    """The call's events once the room has closed it on the books."""
    deadline = now() + TIMELINE_TIMEOUT_S
    while True:
        answer = await http.get(f"/v1/calls/{call_id}")
        answer.raise_for_status()
        events = [dict(e) for e in answer.json()["events"]]
        if any(e["type"] == EventType.SESSION_ENDED.value for e in events) or now() > deadline:
            return events
        await asyncio.sleep(0.2)


def _events(timeline: list[dict[str, Any]], cards: list[dict[str, Any]]) -> list[Event]:
    """Triggers as the server fired them (their words and time, from the timeline) and the hint cards as
    the rep's socket received them (at their arrival), in time order."""
    events = [
        Event(EventType.COACH_TRIGGER, "bench", at, dict(e["data"]))
        for e in timeline
        if e["type"] == EventType.COACH_TRIGGER.value
        and (at := CoachTrigger.from_data(e["data"]).at) is not None
    ]
    events += [Event(EventType.COACH_HINT, "bench", float(m["_arrival"]), dict(m)) for m in cards]
    return sorted(events, key=lambda e: e.t)


# --- what the sockets received --------------------------------------------------------------------------


def _audio_figures(
    ears: dict[str, list[ReceivedFrame]], sent: list[_Sent], whispered: list[float]
) -> dict[str, Any]:
    firsts = [frames[0].play_ms / 1000 for frames in ears.values() if frames]
    origin = min(firsts) if firsts else now()  # a room tick: every listener's frames fall on its 20 ms grid
    tracks = {role: _track(frames, origin) for role, frames in ears.items()}
    length = max(track.size for track in tracks.values())
    tracks = {role: np.concatenate([t, np.zeros(length - t.size, np.int16)]) for role, t in tracks.items()}

    def heard(listener: str, speaker: str) -> PCM16:
        return _place([s for s in sent if s.role == speaker], tracks[listener], origin)

    rep_should = heard("rep", "customer")
    spans = _whisper_spans(tracks["rep"], rep_should, whispered, origin)
    coach_customer, coach_rep = heard("coach", "customer"), heard("coach", "rep")
    return {
        "leak": _residual(tracks["customer"], [heard("customer", "rep")], spans, origin),
        "to_rep": _residual(tracks["rep"], [rep_should], spans, origin),
        "whisper_s": sum(end - start for start, end in spans),
        "coach_heard": {
            "customer": _heard_alone(tracks["coach"], coach_customer, coach_rep),
            "rep": _heard_alone(tracks["coach"], coach_rep, coach_customer),
        },
    }


def _track(frames: list[ReceivedFrame], origin: float) -> PCM16:
    """A listener's downlink laid out on the room clock from ``origin``, by each frame's timestamp."""
    starts = [round((f.play_ms / 1000 - origin) * RATE) for f in frames]
    size = max((s + f.pcm.size for s, f in zip(starts, frames, strict=True)), default=0)
    out = np.zeros(size, np.int16)
    for start, frame in zip(starts, frames, strict=True):
        if start >= 0:
            out[start : start + frame.pcm.size] = frame.pcm
    return out


def _place(lines: Sequence[_Sent], received: PCM16, origin: float) -> PCM16:
    """What a listener should have received of these lines: each where it turns up in ``received``; a
    line not found there (it never arrived) goes where the others did, at their median delay."""
    lags = [_lag(line, received, origin) for line in lines]
    found = [lag for lag in lags if lag is not None]
    usual = int(np.median(found)) if found else None
    out = np.zeros(received.size, np.int32)
    for line, lag in zip(lines, lags, strict=True):
        lag = lag if lag is not None else usual
        if lag is None:
            continue
        start = round((line.captured - origin) * RATE) + lag
        first, last = max(0, start), min(received.size, start + line.pcm.size)
        if first < last:
            out[first:last] += line.pcm[first - start : last - start]
    return np.clip(out, -32768, 32767).astype(np.int16)


def _lag(line: _Sent, received: PCM16, origin: float) -> int | None:
    """Samples between when ``line`` was captured and where it best matches ``received`` (0 to
    ``MAX_LAG_S``), by normalized cross-correlation; None when nothing there looks like it."""
    pcm = line.pcm.astype(np.float64) / 32768.0
    power = float(np.dot(pcm, pcm))
    if power <= 0.0:
        return None
    size, span = pcm.size, int(MAX_LAG_S * RATE)
    start = round((line.captured - origin) * RATE)
    window = np.zeros(size + span)
    first, last = max(0, start), min(received.size, start + size + span)
    if first < last:
        window[first - start : last - start] = received[first:last] / 32768.0
    n = 1 << int(np.ceil(np.log2(window.size + size)))
    corr = np.fft.irfft(np.fft.rfft(window, n) * np.conj(np.fft.rfft(pcm, n)), n)[: span + 1]
    energy = np.concatenate([[0.0], np.cumsum(window * window)])
    norms = np.sqrt(np.maximum(energy[size : size + span + 1] - energy[: span + 1], 0.0) * power)
    score = np.where(norms > 1e-9, corr / np.maximum(norms, 1e-9), 0.0)
    best = int(np.argmax(score))
    return best if score[best] >= MIN_MATCH else None


def _whisper_spans(
    received: PCM16, expected: PCM16, whispered: list[float], origin: float
) -> list[tuple[float, float]]:
    """When the AI coach's whisper played, as the rep heard it: from each whispered card's arrival to the
    last 20 ms in which the rep received more than the customer's voice, before a second with none (the
    whisper may start up to ``WHISPER_MAX_S`` late, queued behind others). A whisper that never played
    gives no span."""
    spans: list[tuple[float, float]] = []
    pause = int(WHISPER_PAUSE_S / TICK_S)
    for arrival in sorted(whispered):
        first = max(0, int((arrival - origin) / TICK_S))
        last: int | None = None
        for tick in range(first, first + int(WHISPER_MAX_S / TICK_S)):
            a, b = tick * TICK_SAMPLES, (tick + 1) * TICK_SAMPLES
            if b > received.size or (last is not None and tick - last > pause):
                break
            extra = received[a:b].astype(np.int32) - expected[a:b].astype(np.int32)
            if rms_dbfs(np.clip(extra, -32768, 32767).astype(np.int16)) > WHISPER_DBFS:
                last = tick
        if last is not None:
            spans.append((arrival, origin + (last + 1) * TICK_S))
    return _merged(spans)


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["--serve"]:
            serve()
        case ["--serve", "--fast", path]:
            serve(Path(path))
        case _:
            sys.exit("usage: python -m parley.bench.coach_ws --serve [--fast SCRIPT.json]")
