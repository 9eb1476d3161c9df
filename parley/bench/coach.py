"""``parley bench coach``: scripted sales calls through a real room, heard by the AI coach.

Each call has a customer leg and a rep leg (Piper speaks their lines in real time into the room), a
human coach listening, and the AI coach whispering to the rep. Every leg is transcribed on its own
with the embedded recogniser, the coach's triggers fire from those transcripts, and its hints are
spoken (Piper) into the rep's mix only.

By default the legs are real: WebSocket participants of a coached room on a server in a child process
(``coach_ws.py``, ``"legs": "websocket"``). ``in_process=True`` runs this module's baseline instead: a
``Room`` and a ``LiveCoach`` in this process, fed and heard directly (``"legs": "in-process"``).

Figures:

- ``precision`` / ``recall``: triggers fired against the lines the script marks (a trigger counts for
  the line whose transcript fired it);
- ``hint_latency_p50_ms`` / ``p90``: from the end of the speech that made a trigger fire (when its last
  voiced 20 ms went into the room: the line itself, or for ``next_step_missing`` the rep's line that
  closed its window) to the hint card; ``llm_rewrite_p50_ms``: from the trigger to the model's rewrite
  of the card (``hints_rewritten_by_llm`` of them);
- ``whisper_leak``: whether any whisper energy reached the customer. Measured on the customer's
  downlink: what it received minus the mix of what the customer should hear (the rep alone), tick by
  tick; any residual above -60 dBFS while the coach was whispering is a leak. ``whisper_to_rep_dbfs``
  shows the same residual on the rep's downlink, so a whisper that never played cannot pass for no leak
  (with no whisper heard in any call, ``whisper_leak`` is None); ``whisper_measured_s``: how long the
  whispers the leak was measured over played;
- ``coach_hears_dbfs``: the listening coach's received level in the ticks where only the customer (or
  only the rep) spoke: a coach who misses a side reads -100 there.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from parley.audio.energy import SILENCE_DBFS, rms_dbfs
from parley.audio.frame import PCM16, AudioFrame
from parley.audio.mixer import mix
from parley.bench.coach_cases import CALLS, SalesCall
from parley.bench.voice import CallerVoice
from parley.engine.agent import AgentConfig
from parley.engine.coaching import CoachingSettings
from parley.engine.event_payloads import CoachHint, CoachTrigger, RoomUtterance
from parley.engine.events import Event, EventType, now
from parley.engine.options import EngineStack
from parley.rooms.model import ROOM_RATE, TICK_S, TICK_SAMPLES, Mode, Participant, Role
from parley.rooms.room import Room
from parley.rooms.transcriber import per_leg_transcription
from parley.simulate import percentile
from parley.stack import prepare_stack

LEAK_DBFS = -60.0
GAP_S = 0.9
"""Silence between two lines of the script."""
UTTERANCE_TIMEOUT_S = 15.0
SETTLE_S = 3.0
"""After the last line: time for its hint (and whisper) to arrive."""


class _Capture:
    """A listener's ear: keeps every frame the room sent it, at the room's rate."""

    sample_rate = ROOM_RATE

    def __init__(self) -> None:
        self.frames: list[PCM16] = []

    async def write(self, frame: AudioFrame) -> None:
        self.frames.append(frame.pcm)

    async def clear(self) -> None:
        return None

    def audio(self) -> PCM16:
        return np.concatenate(self.frames) if self.frames else np.zeros(0, np.int16)


@dataclasses.dataclass(slots=True)
class _Said:
    index: int
    role: str
    expect: str | None
    speech_end: float
    text: str = ""


async def run_coach_bench(
    say: Callable[[str], None] = lambda _: None, *, use_llm: bool = True, in_process: bool = False
) -> dict[str, Any]:
    if not in_process:
        from parley.bench.coach_ws import run_ws_coach_bench

        return await run_ws_coach_bench(say, use_llm=use_llm)
    say("loading and warming the embedded stack …")
    stack = await prepare_stack(AgentConfig(name="coach-bench"))
    voice = await asyncio.to_thread(CallerVoice, varied=False)
    calls = []
    try:
        for call in CALLS:
            say(f"call {call.name}: {len(call.lines)} lines in real time …")
            calls.append(await _run_call(call, stack, voice, use_llm))
    finally:
        # A hint the model was still writing when the call ended must be done before the process
        # exits: native code running on a daemon thread at interpreter shutdown aborts the process.
        aclose = getattr(stack.llm, "aclose", None)
        if aclose is not None:
            await aclose()
    return _report(calls, use_llm, legs="in-process")


async def _run_call(call: SalesCall, stack: EngineStack, voice: CallerVoice, use_llm: bool) -> dict[str, Any]:
    events: list[Event] = []
    room_id = f"bench-{call.name}"
    # Every line synthesized before the call starts: a gap while Piper works would be dead air.
    audios = [await asyncio.to_thread(voice.say, line.text) for line in call.lines]

    def emit(event: Event) -> None:
        events.append(event)

    def coach_emit(type_: EventType, data: dict[str, Any]) -> None:
        emit(Event(type_, room_id, now(), data))

    from parley.analysis.coach import Hint, LiveCoach

    settings = CoachingSettings(
        enabled=True, competitors=list(call.competitors), use_llm=use_llm, whisper_hints=True
    )
    whispers: set[asyncio.Task[None]] = set()
    whisper_ticks: list[tuple[float, float]] = []

    async def whisper(hint: Hint) -> None:
        if hint.whisper:
            task = asyncio.create_task(_speak(stack, room.leg("ai-coach"), hint.text, whisper_ticks))
            whispers.add(task)
            task.add_done_callback(whispers.discard)

    coach = LiveCoach(settings, coach_emit, llm=stack.llm, on_hint=whisper)
    room = Room(
        room_id,
        emit,
        transcriber_factory=per_leg_transcription(
            stack.recognizer,
            stack.vad_factory,
            roles=(Role.CUSTOMER, Role.REP),
            on_utterance=coach.on_utterance,
            on_speaking=lambda who, active: coach.on_speaking(str(who.role), active),
            vocabulary=call.competitors,
        ),
    )
    ears = {name: _Capture() for name in ("customer", "rep", "coach")}
    room.join(Participant("customer", Role.CUSTOMER, Mode.SPEAK), ears["customer"])
    room.join(Participant("rep", Role.REP, Mode.SPEAK), ears["rep"])
    room.join(Participant("coach", Role.COACH, Mode.LISTEN), ears["coach"])
    room.join(Participant("ai-coach", Role.COACH, Mode.WHISPER, name="AI coach"), _Capture())
    origin = room.time
    clock = asyncio.create_task(room.run())
    ticker = asyncio.create_task(_tick_every_second(coach))
    said: list[_Said] = []
    try:
        for index, (line, audio) in enumerate(zip(call.lines, audios, strict=True)):
            end = await _speak_frame(room.leg(line.role), audio)
            said.append(_Said(index, line.role, line.expect, end))
            said[-1].text = await _utterance(events, line.role)
            await asyncio.sleep(GAP_S)
        await asyncio.sleep(SETTLE_S)
        await coach.drain()
        if whispers:
            await asyncio.gather(*whispers)
        await asyncio.sleep(0.5)
    finally:
        ticker.cancel()
        await coach.close()
        recording = await room.close()
        clock.cancel()
    assert recording is not None
    spans = _merged(whisper_ticks)
    return {
        "name": call.name,
        "lines": said,
        "events": events,
        "leak": _residual(ears["customer"].audio(), [recording.leg("rep")], spans, origin),
        "to_rep": _residual(ears["rep"].audio(), [recording.leg("customer")], spans, origin),
        "whisper_s": sum(end - start for start, end in spans),
        "coach_heard": {
            "customer": _heard_alone(ears["coach"].audio(), recording.leg("customer"), recording.leg("rep")),
            "rep": _heard_alone(ears["coach"].audio(), recording.leg("rep"), recording.leg("customer")),
        },
    }


async def _tick_every_second(coach: Any) -> None:
    while True:
        await asyncio.sleep(1.0)
        await coach.tick()


async def _speak_frame(leg: Any, audio: AudioFrame) -> float:
    """Feed ``audio`` to a leg in real time, 20 ms at a time; the monotonic time its last voiced sample
    was fed (the line's speech end)."""
    pcm, rate = audio.pcm, audio.sample_rate
    step = int(rate * TICK_S)
    voiced = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)
    last_voiced = int(voiced[-1]) if voiced.size else pcm.size
    start = now()
    speech_end = start
    for i, offset in enumerate(range(0, pcm.size, step)):
        delay = start + i * TICK_S - now()
        if delay > 0:
            await asyncio.sleep(delay)
        leg.feed(AudioFrame(pcm[offset : offset + step], rate))
        if offset <= last_voiced < offset + step:
            speech_end = now()
    return speech_end


async def _speak(stack: EngineStack, leg: Any, text: str, spans: list[tuple[float, float]]) -> None:
    """The AI coach's whisper: the hint synthesized and fed to its leg in real time."""
    started = now()
    chunks = [chunk async for chunk in stack.tts.synthesize(text)]
    pcm = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    await _speak_frame(leg, AudioFrame(pcm, stack.tts.sample_rate))
    spans.append((started, now() + 0.2))


async def _utterance(events: list[Event], role: str) -> str:
    """The transcript of the line just spoken: the next ``room.utterance`` of that role."""
    seen = {id(e) for e in events if e.type is EventType.ROOM_UTTERANCE}
    deadline = now() + UTTERANCE_TIMEOUT_S
    while now() < deadline:
        for event in events:
            if event.type is EventType.ROOM_UTTERANCE and id(event) not in seen:
                said = event.payload(RoomUtterance)
                if said.role == role:
                    return said.text
        await asyncio.sleep(0.05)
    return ""


def _heard_alone(received: PCM16, side: PCM16, other: PCM16) -> float:
    """Level of what a listener received in the ticks where only ``side`` spoke (the other side silent)."""
    ticks = [
        received[a : a + TICK_SAMPLES]
        for a in range(0, min(received.size, side.size, other.size) - TICK_SAMPLES + 1, TICK_SAMPLES)
        if rms_dbfs(side[a : a + TICK_SAMPLES]) > -50.0 and rms_dbfs(other[a : a + TICK_SAMPLES]) < -70.0
    ]
    return rms_dbfs(np.concatenate(ticks)) if ticks else SILENCE_DBFS


def _residual(
    received: PCM16, sources: list[PCM16], spans: list[tuple[float, float]], origin: float
) -> float:
    """Loudest 20 ms of what ``received`` holds beyond the mix of ``sources``, while the coach whispered."""
    loudest = SILENCE_DBFS
    for start, end in spans:
        first = max(0, int((start - origin) / TICK_S))
        last = int((end - origin) / TICK_S) + 1
        for tick in range(first, last):
            a, b = tick * TICK_SAMPLES, (tick + 1) * TICK_SAMPLES
            if b > received.size:
                break
            expected = mix([s[a:b] for s in sources], TICK_SAMPLES)
            extra = received[a:b].astype(np.int32) - expected.astype(np.int32)
            loudest = max(loudest, rms_dbfs(np.clip(extra, -32768, 32767).astype(np.int16)))
    return loudest


def _merged(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Overlapping spans as one (whispers queue one behind another), so their total time counts once."""
    out: list[tuple[float, float]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _report(calls: list[dict[str, Any]], use_llm: bool, legs: str = "in-process") -> dict[str, Any]:
    expected: set[tuple[str, int, str]] = set()
    fired: set[tuple[str, int | None, str]] = set()
    latencies: list[float] = []
    sources: dict[str, int] = {}
    refined = 0
    rewrite_ms: list[float] = []
    detail = []
    for call in calls:
        lines: list[_Said] = call["lines"]
        for line in lines:
            if line.expect:
                expected.add((call["name"], line.index, line.expect))
        events: list[Event] = call["events"]
        hints = [e for e in events if e.type is EventType.COACH_HINT and not e.payload(CoachHint).refines]
        rewrites = [
            c for c in (e.payload(CoachHint) for e in events if e.type is EventType.COACH_HINT) if c.refines
        ]
        refined += len(rewrites)
        rewrite_ms += [float(card.latency_ms) for card in rewrites if card.latency_ms is not None]
        triggers = [e for e in events if e.type is EventType.COACH_TRIGGER]
        for trigger, hint in zip(triggers, _hints_for(triggers, hints), strict=True):
            fired_as = trigger.payload(CoachTrigger)
            card = hint.payload(CoachHint) if hint is not None else None
            name = fired_as.trigger
            source = next((s for s in reversed(lines) if s.text and s.text == fired_as.text), None)
            key = (call["name"], source.index if source else None, name)
            fired.add(key)
            if card is not None:
                sources[str(card.source)] = sources.get(str(card.source), 0) + 1
            if source is not None and hint is not None and key in expected:
                # From the end of the line that made it fire: the line itself, or for a next step
                # left unsaid, the rep line that closed the window.
                cause = max(
                    (s.speech_end for s in lines if s.speech_end <= trigger.t), default=source.speech_end
                )
                latencies.append((hint.t - cause) * 1000)
            detail.append(
                {
                    "call": call["name"],
                    "line": key[1],
                    "trigger": name,
                    "heard": fired_as.text,
                    "hint": card.text if card is not None else None,
                    "correct": key in expected,
                }
            )
        for line in lines:
            if line.expect and (call["name"], line.index, line.expect) not in fired:
                detail.append(
                    {"call": call["name"], "line": line.index, "missed": line.expect, "heard": line.text}
                )
    true_positives = len(fired & {(c, i, t) for c, i, t in expected})
    leak = max(call["leak"] for call in calls)
    # No whisper heard by the rep in any call: nothing could leak, so "no leak" would say nothing.
    played = max(call["to_rep"] for call in calls) > LEAK_DBFS
    return {
        "legs": legs,
        "hint_latency_p50_ms": percentile(latencies, 50),
        "hint_latency_p90_ms": percentile(latencies, 90),
        "precision": round(true_positives / len(fired), 3) if fired else 0.0,
        "recall": round(true_positives / len(expected), 3) if expected else 0.0,
        "whisper_leak": leak > LEAK_DBFS if played else None,
        "whisper_leak_dbfs": round(leak, 1),
        "whisper_to_rep_dbfs": round(min(call["to_rep"] for call in calls), 1),
        "whisper_measured_s": round(sum(call.get("whisper_s", 0.0) for call in calls), 1),
        "coach_hears_dbfs": {
            call["name"]: {k: round(v, 1) for k, v in call["coach_heard"].items()} for call in calls
        },
        "utterances": sum(len(call["lines"]) for call in calls),
        "expected_triggers": len(expected),
        "fired_triggers": len(fired),
        "hint_sources": sources,
        "hints_rewritten_by_llm": refined,
        "llm_rewrite_p50_ms": percentile(rewrite_ms, 50),
        "llm_hints": use_llm,
        "detail": detail,
    }


def _hints_for(triggers: list[Event], hints: list[Event]) -> list[Event | None]:
    """Each trigger's hint: hints name their trigger and come after it, one per trigger."""
    pool = list(hints)
    out: list[Event | None] = []
    for trigger in triggers:
        name = trigger.payload(CoachTrigger).trigger
        hint = next((h for h in pool if h.payload(CoachHint).trigger == name and h.t >= trigger.t), None)
        if hint is not None:
            pool.remove(hint)
        out.append(hint)
    return out
