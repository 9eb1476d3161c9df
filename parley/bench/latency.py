"""``parley bench latency``: spoken questions through the embedded stack in real time.

Questions are synthesized at run time. Some carry a natural 400–700 ms pause mid-sentence: answering in
that pause is a premature cut-in. Some answers are interrupted by the user to measure barge-in. Every
latency is measured against the input signal itself (its first and last voiced samples), never against
the VAD's own decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.console import Console

from parley.audio.frame import AudioFrame
from parley.engine.agent import AgentConfig
from parley.engine.events import Event, EventType
from parley.simulate import Conversation, SimulationResult, UserTurn, percentile, synthesize_speech
from parley.stack import prepare_stack

QUESTIONS: list[tuple[str, ...]] = [
    ("What is the capital of France?",),
    ("Can you tell me a joke?",),
    ("What's the capital of", "Australia?"),
    ("How are you doing today?",),
    ("Could you tell me a fun fact about", "the ocean?"),
    ("What is Parley?",),
    ("I would like to know", "what the capital of Japan is."),
    ("What do you like to do for fun?",),
    ("Can you recommend", "a good book to read?"),
    ("Why is the sky blue?",),
]
PAUSES_MS = [520, 640, 450, 700]
INTERRUPTIONS = [
    "Wait, tell me about Tokyo instead.",
    "Sorry, what is the capital of Japan?",
    "Hold on, can you say that again?",
    "Actually, tell me a joke.",
]
BARGE_IN_AFTER_MS = 900


async def build_turns(tts: Any) -> list[UserTurn]:
    turns: list[UserTurn] = []
    pauses = iter(PAUSES_MS)
    interruptions = iter(INTERRUPTIONS)
    for index, parts in enumerate(QUESTIONS):
        pieces = [await synthesize_speech(tts, part) for part in parts]
        rate = pieces[0].sample_rate
        audio = pieces[0].pcm
        for piece in pieces[1:]:
            gap = np.zeros(int(next(pauses) / 1000 * rate) - int(0.4 * rate), np.int16)  # minus the padding
            audio = np.concatenate([audio, gap, piece.pcm])
        turns.append(UserTurn(AudioFrame(audio, rate)))
        if index % 2 == 1:
            interruption = next(interruptions, None)
            if interruption is not None:
                turns.append(UserTurn(await synthesize_speech(tts, interruption), BARGE_IN_AFTER_MS))
    return turns


def breakdown(result: SimulationResult) -> dict[str, dict[str, float | None]]:
    """Where the time goes after the user stops speaking, per stage, for turns that were answered."""
    stages: dict[str, list[float]] = {
        "endpoint_wait": [],
        "asr_final": [],
        "llm_first_token": [],
        "first_clause": [],
        "tts_first_byte": [],
    }
    events = result.events
    for turn_end in (e for e in events if e.type is EventType.TURN_ENDED):
        speech_end = turn_end.data["speech_end"]
        started = _first(events, EventType.AGENT_AUDIO_STARTED, after=turn_end.t)
        if started is None:
            continue
        reply_id = started.data["reply_id"]
        stages["endpoint_wait"].append((turn_end.t - speech_end) * 1000)
        asr = [
            e
            for e in events
            if e.type is EventType.TRANSCRIPT_INTERIM
            and e.data.get("stable")
            and speech_end <= e.t <= turn_end.t
        ]
        if asr:
            stages["asr_final"].append((asr[-1].t - speech_end) * 1000)
        for name, kind in (
            ("llm_first_token", EventType.LLM_FIRST_TOKEN),
            ("first_clause", EventType.AGENT_TEXT),
            ("tts_first_byte", EventType.TTS_FIRST_BYTE),
        ):
            hit = next((e for e in events if e.type is kind and e.data.get("reply_id") == reply_id), None)
            if hit is not None:
                stages[name].append((hit.data.get("ready_at", hit.t) - speech_end) * 1000)
    return {name: {"p50": percentile(v, 50), "p90": percentile(v, 90)} for name, v in stages.items()}


def _first(events: list[Event], kind: EventType, after: float) -> Event | None:
    return next((e for e in events if e.type is kind and e.t >= after), None)


async def run_latency_bench(agent: AgentConfig, progress: Console | None = None) -> dict[str, Any]:
    say = (progress or Console(quiet=True)).print
    say("loading and warming the embedded stack …")
    stack = await prepare_stack(agent)
    turns = await build_turns(stack.tts)
    say(f"running {len(turns)} user turns in real time (about two minutes) …")
    conversation = Conversation(agent, stack)
    result = await conversation.run(turns)
    report: dict[str, Any] = dict(result.summary())
    report["breakdown"] = breakdown(result)
    report["turn_count"] = len(result.turns)
    return report
