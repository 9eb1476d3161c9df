"""``parley simulate``: play recorded user turns into a live session and keep everything that happened."""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.wav import read_wav, write_wav
from parley.engine.agent import AgentConfig
from parley.engine.conversation import open_session
from parley.engine.event_payloads import (
    AgentAudioStarted,
    AgentText,
    ReplyCancelled,
    TranscriptFinal,
    TurnResumed,
)
from parley.engine.events import Event, EventType, JsonlWriter, Timeline, now
from parley.engine.session import EngineStack, SessionOptions
from parley.engine.state import SessionState
from parley.engine.tools import CallContext
from parley.providers.tts.base import SpeechSynthesizer
from parley.simulation import Clip, Loudspeaker, Microphone, agent_silent_at, mix_stereo, voiced_span
from parley.stack import build_tools, prepare_stack

SIM_RATE = 16000


@dataclass(slots=True)
class TurnResult:
    user_text: str
    agent_text: str
    v2v_ms: float | None
    interrupted: bool = False
    premature: bool = False
    """The agent started speaking before the user's speech had ended."""
    bargein_ms: float | None = None
    """For a user turn that interrupted the agent: speech onset to agent silence."""


@dataclass(slots=True)
class SimulationResult:
    turns: list[TurnResult] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        return turn_figures(self.turns)


def turn_figures(turns: list[TurnResult]) -> dict[str, Any]:
    """The figures every conversation benchmark reports, whatever carried the call."""
    v2v = [t.v2v_ms for t in turns if t.v2v_ms is not None]
    bargein = [t.bargein_ms for t in turns if t.bargein_ms is not None]
    return {
        "turns": [asdict(t) for t in turns],
        "v2v_p50_ms": percentile(v2v, 50),
        "v2v_p90_ms": percentile(v2v, 90),
        "bargein_p50_ms": percentile(bargein, 50),
        "bargein_p90_ms": percentile(bargein, 90),
        "premature_cutins": sum(t.premature for t in turns),
    }


def distinct_finals(finals: list[str]) -> list[str]:
    """Final transcripts with each said once, when all that is known is their texts: a turn that went on
    after the agent cut in on a pause is final twice, and the later text contains the earlier."""
    return [t for i, t in enumerate(finals) if not any(f.startswith(t) for f in finals[i + 1 :])]


def caller_finals(records: Iterable[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """The caller's final transcripts, each turn once, from ``(event type, data)`` in timeline order.

    A turn the agent cut in on and the caller went on with is final twice: its first piece, then the
    whole turn (heard again whole, so its text need not start with the piece's). The ``turn.resumed``
    that names the piece (``merged_with``) retires it."""
    finals: list[str] = []
    for kind, data in records:
        if kind == EventType.TRANSCRIPT_FINAL:
            finals.append(TranscriptFinal.from_data(data).text)
        elif kind == EventType.TURN_RESUMED:
            merged = TurnResumed.from_data(data).merged_with
            if merged and finals and finals[-1].strip() == merged.strip():
                finals.pop()
    return distinct_finals(finals)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 1)


@dataclass(slots=True)
class UserTurn:
    audio: AudioFrame
    barge_in_at_ms: float | None = None
    """Start this turn this long after the agent's audio began, instead of after the agent finished."""
    text: str = ""
    """What is said, when known (synthesized turns): the reference for word error rates."""


class Conversation:
    """One simulated call: a session, a microphone and a loudspeaker on the same clock."""

    def __init__(self, agent: AgentConfig, stack: EngineStack, options: SessionOptions | None = None) -> None:
        self.timeline = Timeline()
        self.speaker = Loudspeaker(SIM_RATE)
        context = CallContext()
        tools = build_tools(agent, context=context)
        self.session = open_session(agent, stack, self.speaker, self.timeline, tools, options)
        context.call_id = self.session.id
        self.mic = Microphone(self.session, SIM_RATE)
        self.origin = now()

    async def run(self, turns: list[UserTurn], answer_timeout_s: float = 30.0) -> SimulationResult:
        result = SimulationResult()
        runner = asyncio.create_task(self.session.run())
        try:
            async with self.mic:
                await self._wait_quiet(answer_timeout_s)
                for index, turn in enumerate(turns):
                    mark = len(self.timeline.events)
                    start = await self.mic.say(turn.audio.pcm, turn.audio.sample_rate)
                    said = _concat_since(self.mic.recorded, start)
                    upcoming = turns[index + 1] if index + 1 < len(turns) else None
                    if upcoming is not None and upcoming.barge_in_at_ms is not None:
                        await self._wait_agent_audio(start, answer_timeout_s)
                        await asyncio.sleep(upcoming.barge_in_at_ms / 1000)
                    else:
                        await self._wait_quiet(answer_timeout_s)
                    result.turns.append(self._score(mark, start, said))
                await asyncio.sleep(0.2)
        finally:
            self.session.end("simulation_done")
            await runner
        result.events = list(self.timeline.events)
        return result

    async def _wait_quiet(self, limit_s: float) -> None:
        """Wait until the agent has answered and finished speaking (or there is nothing to answer)."""
        deadline = now() + limit_s
        await asyncio.sleep(0.3)
        while now() < deadline and self.session.state is not SessionState.ENDED:
            if self.session.idle:
                await asyncio.sleep(0.3)  # still idle a moment later: the turn is really over
                if self.session.idle:
                    return
            await asyncio.sleep(0.05)

    async def _wait_agent_audio(self, since: float, limit_s: float) -> None:
        """Wait until agent audio that started after ``since`` is playing."""
        deadline = now() + limit_s
        while now() < deadline:
            if any(
                e.type is EventType.AGENT_AUDIO_STARTED and _audio_at(e) >= since
                for e in reversed(self.timeline.events[-50:])
            ):
                return
            await asyncio.sleep(0.005)

    def _score(self, mark: int, start: float, pcm: PCM16) -> TurnResult:
        onset, speech_end = voiced_span(pcm, SIM_RATE, start)
        events = self.timeline.events[mark:]
        user = " ".join(caller_finals((e.type, e.data) for e in events))
        agent = " ".join(e.payload(AgentText).text for e in events if e.type is EventType.AGENT_TEXT)
        interrupted = any(
            e.payload(ReplyCancelled).interrupted for e in events if e.type is EventType.REPLY_CANCELLED
        )
        started = [
            at for e in events if e.type is EventType.AGENT_AUDIO_STARTED and (at := _audio_at(e)) >= start
        ]
        v2v = round((started[0] - speech_end) * 1000, 1) if started else None
        stop = agent_silent_at(self.speaker.clips, onset, SIM_RATE)
        bargein = round((stop - onset) * 1000, 1) if stop is not None else None
        return TurnResult(user, agent, v2v, interrupted, v2v is not None and v2v < 0, bargein)

    def write(self, out: Path, result: SimulationResult) -> tuple[PCM16, PCM16]:
        """Write the call's files; returns the stereo recording's two channels (user, agent)."""
        out.mkdir(parents=True, exist_ok=True)
        end = max(filter(None, [self.speaker.last_audio_end(), now()]))
        left, right = mix_stereo(self.mic.recorded, self.speaker.clips, self.origin, end, SIM_RATE)
        write_wav(out / "conversation.wav", [left, right], SIM_RATE)
        writer = JsonlWriter(out / "events.jsonl", self.origin)
        for event in result.events:
            writer(event)
        writer.close()
        (out / "transcript.json").write_text(json.dumps(result.summary(), indent=2) + "\n", encoding="utf-8")
        return left, right


def _concat_since(clips: list[Clip], start: float) -> PCM16:
    pieces = [c.pcm for c in clips if c.start >= start - 1e-6]
    return np.concatenate(pieces) if pieces else np.zeros(0, np.int16)


DEMO_QUESTIONS = ["Hi there! What is the capital of France?", "Thanks. Can you tell me a joke?"]


async def synthesize_speech(tts: SpeechSynthesizer, text: str) -> AudioFrame:
    """Speak ``text`` with a synthesizer, padded with a little silence: a stand-in for a recorded user."""
    chunks = [chunk async for chunk in tts.synthesize(text)]
    pad = np.zeros(int(0.2 * tts.sample_rate), np.int16)
    return AudioFrame(np.concatenate([pad, *chunks, pad]), tts.sample_rate)


async def run_simulation(
    agent: AgentConfig,
    wavs: list[Path],
    out: Path,
    barge_in_at_ms: float | None = None,
    progress: Console | None = None,
    record: bool = True,
) -> dict[str, object]:
    """Run ``parley simulate``: load and warm the stack, play each WAV as a user turn, write the call."""
    say = (progress or Console(quiet=True)).print
    turns_audio = [read_wav(path) for path in wavs]
    say(f"loading models for agent '{agent.name}' …")
    started = now()
    stack = await prepare_stack(agent)
    say(f"models ready in {now() - started:.1f} s")
    if not turns_audio:
        say("no --say files given: synthesizing two demo questions")
        turns_audio = [await synthesize_speech(stack.tts, q) for q in DEMO_QUESTIONS]
    turns = [
        UserTurn(audio, barge_in_at_ms if i and barge_in_at_ms is not None else None)
        for i, audio in enumerate(turns_audio)
    ]
    conversation = Conversation(agent, stack)
    say(f"playing {len(turns)} user turn(s) in real time …")
    result = await conversation.run(turns)
    channels = conversation.write(out, result)
    say(f"wrote {out / 'conversation.wav'}, {out / 'transcript.json'}, {out / 'events.jsonl'}")
    summary = result.summary()
    if record:
        from parley.platform.simulation import record_simulation

        call_id = await record_simulation(
            agent=agent, events=result.events, channels=channels, sample_rate=SIM_RATE
        )
        say(f"recorded as call {call_id}: parley calls show {call_id}")
        summary["call_id"] = call_id
    return summary


def _audio_at(event: Event) -> float:
    """When the audio of an ``agent.audio.started`` event began: its ``at``, else the event's own time."""
    at = event.payload(AgentAudioStarted).at
    return event.t if at is None else at
