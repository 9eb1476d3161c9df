"""``parley bench quality``: do agents answer from their facts, admit what they don't know, call their
tools with the right arguments and hang up on goodbye?

Every business in ``quality_cases`` gets one call through the real stack: its questions are spoken by
the bench's caller voice, heard by the agent's ASR, answered by its LLM with its tools, and judged from
the call's timeline (what the agent said, which tools it called with what). ``--text`` types the
questions instead, which isolates the language model from hearing errors and runs faster.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console

from parley.bench.quality_cases import CASES, QualityAgent, QualityTurn
from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import AgentText, SessionEnded, ToolCalled, TranscriptFinal
from parley.engine.events import Event, EventType
from parley.engine.state import SessionState
from parley.simulate import Conversation, UserTurn
from parley.stack import prepare_stack

_ADMITS = re.compile(
    r"\b(?:(?:do not|don't|not|no) (?:know|sure|certain|have (?:that|this|any|information|details))"
    r"|not able to (?:say|confirm|tell)|(?:can't|cannot|couldn't) (?:say|confirm|tell|answer)"
    r"|no information|take a message|leave a message|pass (?:it|that|your message) on"
    r"|(?:check|find out) (?:with|and|for)|get back to you|call you back|have someone call)",
    re.IGNORECASE,
)
"""An answer that admits the facts do not say (in any of the usual ways), or offers a message."""


@dataclass(slots=True)
class TurnVerdict:
    agent: str
    says: str
    expect: str
    heard: str
    reply: str
    tools: list[dict[str, Any]]
    passed: bool
    why: str


@dataclass(slots=True)
class QualityReport:
    verdicts: list[TurnVerdict] = field(default_factory=list)
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        passed = sum(v.passed for v in self.verdicts)
        by_kind: dict[str, list[int]] = {}
        for verdict in self.verdicts:
            tally = by_kind.setdefault(verdict.expect, [0, 0])
            tally[0] += verdict.passed
            tally[1] += 1
        return {
            "task_success": round(passed / len(self.verdicts), 3) if self.verdicts else 0.0,
            "turns": len(self.verdicts),
            "passed": passed,
            "agents": len({v.agent for v in self.verdicts}),
            "by_expectation": {k: {"passed": p, "turns": n} for k, (p, n) in sorted(by_kind.items())},
            "seconds": round(self.seconds, 1),
            "detail": [asdict(v) for v in self.verdicts],
        }


def _says(text: str, words: str) -> bool:
    """``words`` said as words (or their plural): the "no" in "I don't know" is no "no", the "30" in
    "130" no "30", but "plumbers" says "plumber"."""
    return re.search(rf"(?<!\w){re.escape(words.lower())}(?:e?s)?(?!\w)", text) is not None


def judge(turn: QualityTurn, reply: str, tools: list[dict[str, Any]], ended: bool) -> tuple[bool, str]:
    """Whether the agent's reply to ``turn`` did what a right answer does, and why not."""
    text = reply.lower()
    other_tools = [t["tool"] for t in tools if t["tool"] != "end_call"]
    if turn.expect == "end":
        return (True, "") if ended or any(t["tool"] == "end_call" for t in tools) else (False, "no end_call")
    if turn.expect == "tool":
        for call in tools:
            if call["tool"] != turn.tool:
                continue
            arguments = {k: str(v).lower() for k, v in (call.get("arguments") or {}).items()}
            missing = [
                name
                for name, wanted in turn.arguments.items()
                if not any(w in arguments.get(name, "") for w in wanted)
            ]
            if not missing:
                return True, ""
            return False, f"{turn.tool} called with wrong {', '.join(missing)}: {call.get('arguments')}"
        return False, f"{turn.tool} not called" + (f" (called {other_tools})" if other_tools else "")
    if other_tools:
        return False, f"called {other_tools} unasked"
    if ended:
        return False, "hung up"
    if not text.strip():
        return False, "said nothing"
    if turn.expect == "unknown":
        return (
            (True, "") if _ADMITS.search(text) else (False, "answered instead of admitting it doesn't know")
        )
    wrong = [w for w in turn.none_of if _says(text, w)]
    if wrong:
        return False, f"said {wrong[0]!r}"
    if not any(_says(text, w) for w in turn.any_of):
        return False, f"none of {list(turn.any_of)}"
    return True, ""


async def run_quality_bench(
    progress: Console | None = None, *, text_only: bool = False, cases: tuple[QualityAgent, ...] = CASES
) -> dict[str, Any]:
    say = (progress or Console(quiet=True)).print
    started = time.perf_counter()
    voice = None
    if not text_only:
        from parley.bench.voice import CallerVoice

        voice = await asyncio.to_thread(CallerVoice, varied=False)
    report = QualityReport()
    for case in cases:
        config = case.config()
        if text_only:  # the language model alone: a short tone stands in for speech
            config["tts"] = {"provider": "tone", "options": {"ms_per_char": 5}}
        agent = AgentConfig.model_validate(config)
        stack = await prepare_stack(agent)
        say(f"{case.name}: {len(case.turns)} turns …")
        if voice is None:
            verdicts = await _typed_call(agent, stack, case)
        else:
            verdicts = await _spoken_call(agent, stack, case, voice)
        for verdict in verdicts:
            mark = "ok  " if verdict.passed else "FAIL"
            say(f"  {mark} {verdict.says!r} → {verdict.reply!r} {verdict.tools or ''} {verdict.why}")
        report.verdicts.extend(verdicts)
    report.seconds = time.perf_counter() - started
    return report.as_json()


async def _spoken_call(agent: AgentConfig, stack: Any, case: QualityAgent, voice: Any) -> list[TurnVerdict]:
    conversation = Conversation(agent, stack)
    turns = [UserTurn(await asyncio.to_thread(voice.say, t.says), text=t.says) for t in case.turns]
    result = await conversation.run(turns)
    marks = _turn_marks(result.events)
    return _verdicts(case, result.events, marks)


async def _typed_call(agent: AgentConfig, stack: Any, case: QualityAgent) -> list[TurnVerdict]:
    conversation = Conversation(agent, stack)
    session = conversation.session
    runner = asyncio.create_task(session.run())
    marks: list[int] = []
    try:
        await _settle(session)
        for turn in case.turns:
            if session.state is SessionState.ENDED:
                break
            marks.append(len(conversation.timeline.events))
            session.send_text(turn.says)
            await _settle(session)
    finally:
        session.end("bench_done")
        await runner
    return _verdicts(case, list(conversation.timeline.events), marks)


async def _settle(session: Any, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    await asyncio.sleep(0.2)
    while time.monotonic() < deadline and session.state is not SessionState.ENDED:
        if session.idle:
            await asyncio.sleep(0.2)
            if session.idle:
                return
        await asyncio.sleep(0.05)


def _turn_marks(events: list[Event]) -> list[int]:
    """Where each spoken turn's events begin: at each new user speech after the agent answered."""
    marks: list[int] = []
    answered = True
    for index, event in enumerate(events):
        if event.type is EventType.SPEECH_STARTED and answered:
            marks.append(index)
            answered = False
        elif event.type in (EventType.AGENT_TEXT, EventType.TOOL_CALL):
            answered = True
    return marks


def _verdicts(case: QualityAgent, events: list[Event], marks: list[int]) -> list[TurnVerdict]:
    verdicts: list[TurnVerdict] = []
    for index, turn in enumerate(case.turns):
        if index >= len(marks):
            verdicts.append(
                TurnVerdict(case.name, turn.says, turn.expect, "", "", [], False, "never answered")
            )
            continue
        window = events[marks[index] : marks[index + 1] if index + 1 < len(marks) else len(events)]
        heard = " ".join(
            e.payload(TranscriptFinal).text for e in window if e.type is EventType.TRANSCRIPT_FINAL
        )
        reply = " ".join(e.payload(AgentText).text for e in window if e.type is EventType.AGENT_TEXT)
        calls = [e.payload(ToolCalled) for e in window if e.type is EventType.TOOL_CALL]
        tools = [{"tool": call.tool, "arguments": call.arguments} for call in calls]
        ended = any(
            e.type is EventType.SESSION_ENDED
            and e.payload(SessionEnded).reason not in ("bench_done", "simulation_done")
            for e in window
        )
        passed, why = judge(turn, reply, tools, ended)
        verdicts.append(TurnVerdict(case.name, turn.says, turn.expect, heard, reply, tools, passed, why))
    return verdicts
