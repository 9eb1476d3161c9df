"""What a call's timeline says: its transcript turns and its latency figures (pure functions).

They work on any ordered records with ``seq``, ``type``, ``t`` and ``data`` (envelopes or stored rows),
so the persister, recovery and reports all read the timeline the same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from parley.engine.event_payloads import (
    AgentAudioPlayed,
    AgentAudioStarted,
    AgentAudioStopped,
    AgentReplyDone,
    AgentText,
    BargeIn,
    Error,
    LlmFirstToken,
    ReplyCancelled,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TtsFirstByte,
    TurnEnded,
    payload_or_none,
)
from parley.engine.events import EventType as E


class Record(Protocol):
    @property
    def seq(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def t(self) -> float: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


TURN_EVENTS = frozenset(
    str(k)
    for k in (
        E.SESSION_STARTED,
        E.SPEECH_STARTED,
        E.SPEECH_STOPPED,
        E.TURN_RESUMED,
        E.BARGE_IN_DISMISSED,
        E.TRANSCRIPT_FINAL,
        E.AGENT_TEXT,
        E.AGENT_AUDIO_STARTED,
        E.AGENT_AUDIO_STOPPED,
        E.AGENT_AUDIO_PLAYED,
        E.AGENT_REPLY_DONE,
        E.REPLY_CANCELLED,
        E.ERROR,
    )
)
"""The events a transcript is built from (``agent.audio.played``: see ``unfinished_replies``; ``error``:
the clauses a failed voice never said)."""

TURN_CLOSERS = frozenset(
    str(k) for k in (E.TRANSCRIPT_FINAL, E.AGENT_REPLY_DONE, E.REPLY_CANCELLED, E.AGENT_AUDIO_STOPPED)
)
"""Events after which a call's turns are (re)computed."""


@dataclass(frozen=True, slots=True)
class Turn:
    seq: int
    speaker: str
    text: str
    start_ms: int
    end_ms: int
    interrupted: bool = False
    reply_id: str | None = None


def _at(at: float | None, record: Record) -> float:
    """An event's ``at`` (when the audio edge really was), else the time it was emitted."""
    return record.t if at is None else float(at)


def build_turns(records: Iterable[Record]) -> list[Turn]:
    """User turns from final transcripts (timed by the speech that produced them), agent turns from the
    replies (what was heard, and whether it was cut off), on the call's clock in milliseconds."""
    ordered = sorted((r for r in records if r.type in TURN_EVENTS), key=lambda r: r.seq)
    if not ordered:
        return []
    origin = next((r.t for r in ordered if r.type == E.SESSION_STARTED), ordered[0].t)

    def ms(t: float) -> int:
        return max(0, round((t - origin) * 1000))

    audio_start: dict[str, float] = {}
    audio_stop: dict[str, float] = {}
    for r in ordered:
        if r.type == E.AGENT_AUDIO_STARTED:
            started = payload_or_none(r, AgentAudioStarted)
            if started is not None:
                audio_start.setdefault(started.reply_id, _at(started.at, r))
        elif r.type == E.AGENT_AUDIO_STOPPED:
            stopped = payload_or_none(r, AgentAudioStopped)
            if stopped is not None:
                audio_stop[stopped.reply_id] = _at(stopped.at, r)
    turns: list[Turn] = []
    texts: dict[str, list[tuple[int | None, str]]] = {}
    speech_start: float | None = None
    previous_start: float | None = None
    speech_stop: float | None = None
    for r in ordered:
        kind = r.type
        if kind == E.SPEECH_STARTED:
            onset = payload_or_none(r, SpeechStarted)
            previous_start, speech_start = speech_start, _at(onset.at if onset else None, r)
        elif kind == E.TURN_RESUMED:
            speech_start = previous_start if previous_start is not None else speech_start
        elif kind == E.BARGE_IN_DISMISSED:
            speech_start = None
        elif kind == E.SPEECH_STOPPED:
            pause = payload_or_none(r, SpeechStopped)
            speech_stop = _at(pause.at if pause else None, r)
        elif kind == E.TRANSCRIPT_FINAL:
            final = payload_or_none(r, TranscriptFinal)
            spoken = (final is None or final.source != "text") and speech_start is not None
            start = speech_start if spoken and speech_start is not None else r.t
            end = speech_stop if spoken and speech_stop is not None and speech_stop >= start else r.t
            text = final.text.strip() if final is not None else ""
            if text:
                turns.append(Turn(r.seq, "user", text, ms(start), ms(end)))
            speech_start = speech_stop = previous_start = None
        elif kind == E.AGENT_TEXT:
            said = payload_or_none(r, AgentText)
            if said is not None:
                texts.setdefault(said.reply_id, []).append((said.segment, said.text))
        elif kind == E.ERROR:
            error = payload_or_none(r, Error)
            unsaid = error.unsaid if error is not None else None
            if unsaid is not None:  # the voice failed: that clause and the rest announced were never said
                reply, first = unsaid
                kept = [(n, t) for n, t in texts.get(reply, []) if n is None or n < first]
                texts[reply] = kept
        elif kind == E.AGENT_REPLY_DONE:
            done = payload_or_none(r, AgentReplyDone)
            if done is not None:
                text = " ".join(t.strip() for _, t in texts.get(done.reply_id, []) if t.strip())
                _agent_turn(turns, r, done.reply_id, text, False, audio_start, audio_stop, ms)
        elif kind == E.REPLY_CANCELLED:
            cut = payload_or_none(r, ReplyCancelled)
            if cut is not None:
                text = cut.heard_text.strip()
                _agent_turn(turns, r, cut.reply_id, text, cut.interrupted, audio_start, audio_stop, ms)
    return turns


def _agent_turn(
    turns: list[Turn],
    r: Record,
    reply: str,
    text: str,
    interrupted: bool,
    audio_start: Mapping[str, float],
    audio_stop: Mapping[str, float],
    ms: Callable[[float], int],
) -> None:
    """A reply's turn, timed by its audio, when anything of it was heard."""
    if text:
        start = audio_start.get(reply, r.t)
        end = max(start, audio_stop.get(reply, r.t))
        turns.append(Turn(r.seq, "agent", text, ms(start), ms(end), interrupted, reply))


def _reply_of(r: Record) -> str | None:
    """The reply an agent-side event belongs to (``None`` for other events, or a damaged record)."""
    found: AgentText | AgentAudioStarted | AgentReplyDone | ReplyCancelled | None = None
    if r.type == E.AGENT_TEXT:
        found = payload_or_none(r, AgentText)
    elif r.type == E.AGENT_AUDIO_STARTED:
        found = payload_or_none(r, AgentAudioStarted)
    elif r.type == E.AGENT_REPLY_DONE:
        found = payload_or_none(r, AgentReplyDone)
    elif r.type == E.REPLY_CANCELLED:
        found = payload_or_none(r, ReplyCancelled)
    return None if found is None else found.reply_id


def unfinished_replies(records: Iterable[Record], reason: str) -> list[tuple[str, dict[str, Any]]]:
    """The events that end replies a dead process left open, as the engine ends a reply it stops:
    ``reply.cancelled`` with what had been heard (its last ``agent.audio.played`` clause mark, so at
    most the clause being played is missing), then ``agent.audio.stopped`` if audio had started.
    Fed to ``build_turns`` with the rest, they make the cut-off reply an interrupted agent turn."""
    ordered = sorted((r for r in records if r.type in TURN_EVENTS), key=lambda r: r.seq)
    open_replies: dict[str, tuple[str, float | None]] = {}  # reply -> (heard text, heard until)
    started: set[str] = set()
    for r in ordered:
        if r.type == E.AGENT_AUDIO_PLAYED:
            played = payload_or_none(r, AgentAudioPlayed)
            if played is not None:
                open_replies[played.reply_id] = (played.heard_text.strip(), _at(played.at, r))
            continue
        reply = _reply_of(r)
        if reply is None:
            continue
        if r.type in (E.AGENT_TEXT, E.AGENT_AUDIO_STARTED):
            open_replies.setdefault(reply, ("", None))
            if r.type == E.AGENT_AUDIO_STARTED:
                started.add(reply)
        elif r.type in (E.AGENT_REPLY_DONE, E.REPLY_CANCELLED):
            open_replies.pop(reply, None)
    closing: list[tuple[str, dict[str, Any]]] = []
    for reply, (heard, until) in open_replies.items():
        closing.append(
            (
                str(E.REPLY_CANCELLED),
                {"reply_id": reply, "reason": reason, "heard_text": heard, "interrupted": True},
            )
        )
        if reply in started:
            data: dict[str, Any] = {"reply_id": reply, "reason": reason}
            if until is not None:
                data["at"] = until
            closing.append((str(E.AGENT_AUDIO_STOPPED), data))
    return closing


def _figures(values: list[float]) -> dict[str, float | int]:
    ordered = sorted(values)
    if len(ordered) == 1:
        p50 = p90 = ordered[0]
    else:
        cuts = statistics.quantiles(ordered, n=100, method="inclusive")
        p50, p90 = cuts[49], cuts[89]
    return {
        "count": len(ordered),
        "p50": round(p50, 1),
        "p90": round(p90, 1),
        "mean": round(statistics.fmean(ordered), 1),
        "max": round(ordered[-1], 1),
    }


def latency_summary(records: Iterable[Record]) -> dict[str, Any]:
    """p50/p90 of the latencies the engine measured, and counts of what happened in the call."""
    ordered = sorted(records, key=lambda r: r.seq)
    series: dict[str, list[float]] = {
        "voice_to_voice_ms": [],
        "llm_first_token_ms": [],
        "tts_first_byte_ms": [],
        "barge_in_ms": [],
        "end_of_turn_wait_ms": [],
    }
    counts = {
        "user_turns": 0,
        "agent_replies": 0,
        "barge_ins": 0,
        "interruptions": 0,
        "underruns": 0,
        "errors": 0,
        "tool_calls": 0,
    }
    heard_user = False

    def add(name: str, value: float | None) -> None:
        if value is not None:
            series[name].append(float(value))

    for r in ordered:
        kind = r.type
        if kind == E.TRANSCRIPT_FINAL:
            heard_user = True
            counts["user_turns"] += 1
        elif kind == E.AGENT_AUDIO_STARTED and heard_user:  # the greeting answers nobody: skipped
            started = payload_or_none(r, AgentAudioStarted)
            add("voice_to_voice_ms", started.v2v_ms if started else None)
        elif kind == E.LLM_FIRST_TOKEN:
            token = payload_or_none(r, LlmFirstToken)
            add("llm_first_token_ms", token.latency_ms if token and token.round == 0 else None)
        elif kind == E.TTS_FIRST_BYTE:
            byte = payload_or_none(r, TtsFirstByte)
            add("tts_first_byte_ms", byte.latency_ms if byte else None)
        elif kind == E.BARGE_IN:
            counts["barge_ins"] += 1
            barge_in = payload_or_none(r, BargeIn)
            add("barge_in_ms", barge_in.latency_ms if barge_in else None)
        elif kind == E.TURN_ENDED:
            turn = payload_or_none(r, TurnEnded)
            add("end_of_turn_wait_ms", turn.waited_ms if turn else None)
        elif kind == E.AGENT_REPLY_DONE:
            counts["agent_replies"] += 1
        elif kind == E.REPLY_CANCELLED:
            cut = payload_or_none(r, ReplyCancelled)
            if cut is not None and cut.interrupted:
                counts["interruptions"] += 1
        elif kind == E.AUDIO_UNDERRUN:
            counts["underruns"] += 1
        elif kind == E.ERROR:
            counts["errors"] += 1
        elif kind == E.TOOL_CALL:
            counts["tool_calls"] += 1
    return {
        "latency": {name: _figures(values) for name, values in series.items() if values},
        "counts": counts,
    }
