"""``parley bench latency``: spoken questions through the embedded stack in real time.

Questions are synthesized at run time. Some carry a natural 400–700 ms pause mid-sentence: answering in
that pause is a premature cut-in. Some answers are interrupted by the user to measure barge-in. Every
latency is measured against the input signal itself (its first and last voiced samples), never against
the VAD's own decisions.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from rich.console import Console

from parley.bench.voice import CallerVoice
from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import (
    AgentAudioStarted,
    AgentText,
    LlmFirstToken,
    TranscriptInterim,
    TtsFirstByte,
    TurnEnded,
)
from parley.engine.events import Event, EventType
from parley.simulate import Conversation, SimulationResult, UserTurn, percentile
from parley.stack import prepare_stack

QUESTIONS: list[tuple[str, int | None, float]] = [
    # (question, pause after this many words, pause seconds)
    ("What is the capital of France?", None, 0.0),
    ("Can you tell me a joke?", None, 0.0),
    ("What's the capital of Australia?", 4, 0.52),
    ("How are you doing today?", None, 0.0),
    ("Could you tell me a fun fact about the ocean?", 7, 0.64),
    ("What is Parley?", None, 0.0),
    ("I would like to know what the capital of Japan is.", 5, 0.45),
    ("What do you like to do for fun?", None, 0.0),
    ("Can you recommend a good book to read?", 3, 0.70),
    ("Why is the sky blue?", None, 0.0),
]
INTERRUPTIONS = [
    "Wait, tell me about Tokyo instead.",
    "Sorry, what is the capital of Japan?",
    "Hold on, can you say that again?",
    "Actually, tell me a joke.",
]
BARGE_IN_AFTER_MS = 900


def build_turns(voice: CallerVoice) -> list[UserTurn]:
    """The question set, with an interruption of the agent's answer after every second question."""
    turns: list[UserTurn] = []
    interruptions = iter(INTERRUPTIONS)
    for index, (text, pause_after, pause_s) in enumerate(QUESTIONS):
        turns.append(UserTurn(voice.say(text, pause_after, pause_s), text=text))
        if index % 2 == 1:
            interruption = next(interruptions, None)
            if interruption is not None:
                turns.append(UserTurn(voice.say(interruption), BARGE_IN_AFTER_MS, interruption))
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
        speech_end = turn_end.payload(TurnEnded).speech_end
        started = _first(events, EventType.AGENT_AUDIO_STARTED, after=turn_end.t)
        if started is None:
            continue
        reply_id = started.payload(AgentAudioStarted).reply_id
        stages["endpoint_wait"].append((turn_end.t - speech_end) * 1000)
        asr = [
            e
            for e in events
            if e.type is EventType.TRANSCRIPT_INTERIM
            and e.payload(TranscriptInterim).stable
            and speech_end <= e.t <= turn_end.t
        ]
        if asr:
            stages["asr_final"].append((asr[-1].t - speech_end) * 1000)
        token = next((e for e in events if _of_reply(e, LlmFirstToken, reply_id)), None)
        if token is not None:
            stages["llm_first_token"].append((token.t - speech_end) * 1000)
        clause = next((e for e in events if _of_reply(e, AgentText, reply_id)), None)
        if clause is not None:  # ready before it was announced (once the turn was known to have ended)
            ready = clause.payload(AgentText).ready_at
            stages["first_clause"].append(((clause.t if ready is None else ready) - speech_end) * 1000)
        byte = next((e for e in events if _of_reply(e, TtsFirstByte, reply_id)), None)
        if byte is not None:
            stages["tts_first_byte"].append((byte.t - speech_end) * 1000)
    return {name: {"p50": percentile(v, 50), "p90": percentile(v, 90)} for name, v in stages.items()}


def _of_reply(
    event: Event, cls: type[LlmFirstToken] | type[AgentText] | type[TtsFirstByte], reply_id: str
) -> bool:
    return event.type is cls.EVENT and event.payload(cls).reply_id == reply_id


def _first(events: list[Event], kind: EventType, after: float) -> Event | None:
    return next((e for e in events if e.type is kind and e.t >= after), None)


async def run_latency_bench(
    agent: AgentConfig, progress: Console | None = None, out: Path | None = None
) -> dict[str, Any]:
    say = (progress or Console(quiet=True)).print
    say("loading and warming the embedded stack …")
    stack = await prepare_stack(agent)
    turns = await asyncio.to_thread(build_turns, CallerVoice())
    say(f"running {len(turns)} user turns in real time (about two minutes) …")
    conversation = Conversation(agent, stack)
    result = await conversation.run(turns)
    if out is not None:
        conversation.write(out, result)
    report: dict[str, Any] = dict(result.summary())
    report["breakdown"] = breakdown(result)
    report["turn_count"] = len(result.turns)
    return report
