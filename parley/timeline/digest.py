"""What a call's timeline says: its transcript turns and its latency figures (pure functions).

They work on any ordered records with ``seq``, ``type``, ``t`` and ``data`` (envelopes or stored rows),
so the persister, recovery and reports all read the timeline the same way.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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
    )
)
"""The events a transcript is built from (``agent.audio.played``: see ``unfinished_replies``)."""

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


def _at(record: Record) -> float:
    at = record.data.get("at")
    return float(at) if isinstance(at, int | float) else record.t


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
        reply = str(r.data.get("reply_id"))
        if r.type == E.AGENT_AUDIO_STARTED:
            audio_start.setdefault(reply, _at(r))
        elif r.type == E.AGENT_AUDIO_STOPPED:
            audio_stop[reply] = _at(r)
    turns: list[Turn] = []
    texts: dict[str, list[str]] = {}
    speech_start: float | None = None
    previous_start: float | None = None
    speech_stop: float | None = None
    for r in ordered:
        kind = r.type
        if kind == E.SPEECH_STARTED:
            previous_start, speech_start = speech_start, _at(r)
        elif kind == E.TURN_RESUMED:
            speech_start = previous_start if previous_start is not None else speech_start
        elif kind == E.BARGE_IN_DISMISSED:
            speech_start = None
        elif kind == E.SPEECH_STOPPED:
            speech_stop = _at(r)
        elif kind == E.TRANSCRIPT_FINAL:
            spoken = r.data.get("source") != "text" and speech_start is not None
            start = speech_start if spoken and speech_start is not None else r.t
            end = speech_stop if spoken and speech_stop is not None and speech_stop >= start else r.t
            text = str(r.data.get("text", "")).strip()
            if text:
                turns.append(Turn(r.seq, "user", text, ms(start), ms(end)))
            speech_start = speech_stop = previous_start = None
        elif kind == E.AGENT_TEXT:
            texts.setdefault(str(r.data.get("reply_id")), []).append(str(r.data.get("text", "")))
        elif kind in (E.AGENT_REPLY_DONE, E.REPLY_CANCELLED):
            reply = str(r.data.get("reply_id"))
            if kind == E.AGENT_REPLY_DONE:
                text, interrupted = " ".join(t.strip() for t in texts.get(reply, []) if t.strip()), False
            else:
                text, interrupted = (
                    str(r.data.get("heard_text") or "").strip(),
                    bool(r.data.get("interrupted")),
                )
            if text:
                start = audio_start.get(reply, r.t)
                end = max(start, audio_stop.get(reply, r.t))
                turns.append(Turn(r.seq, "agent", text, ms(start), ms(end), interrupted, reply))
    return turns


def unfinished_replies(records: Iterable[Record], reason: str) -> list[tuple[str, dict[str, Any]]]:
    """The events that end replies a dead process left open, as the engine ends a reply it stops:
    ``reply.cancelled`` with what had been heard (its last ``agent.audio.played`` clause mark, so at
    most the clause being played is missing), then ``agent.audio.stopped`` if audio had started.
    Fed to ``build_turns`` with the rest, they make the cut-off reply an interrupted agent turn."""
    ordered = sorted((r for r in records if r.type in TURN_EVENTS), key=lambda r: r.seq)
    open_replies: dict[str, tuple[str, float | None]] = {}  # reply -> (heard text, heard until)
    started: set[str] = set()
    for r in ordered:
        reply = str(r.data.get("reply_id"))
        if r.type in (E.AGENT_TEXT, E.AGENT_AUDIO_STARTED, E.AGENT_AUDIO_PLAYED):
            open_replies.setdefault(reply, ("", None))
            if r.type == E.AGENT_AUDIO_STARTED:
                started.add(reply)
            elif r.type == E.AGENT_AUDIO_PLAYED:
                open_replies[reply] = (str(r.data.get("heard_text") or "").strip(), _at(r))
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
    for r in ordered:
        data, kind = r.data, r.type
        if kind == E.TRANSCRIPT_FINAL:
            heard_user = True
            counts["user_turns"] += 1
        elif kind == E.AGENT_AUDIO_STARTED and heard_user and isinstance(data.get("v2v_ms"), int | float):
            series["voice_to_voice_ms"].append(float(data["v2v_ms"]))  # the greeting answers nobody: skipped
        elif kind == E.LLM_FIRST_TOKEN and data.get("round", 0) == 0 and "latency_ms" in data:
            series["llm_first_token_ms"].append(float(data["latency_ms"]))
        elif kind == E.TTS_FIRST_BYTE and "latency_ms" in data:
            series["tts_first_byte_ms"].append(float(data["latency_ms"]))
        elif kind == E.BARGE_IN:
            counts["barge_ins"] += 1
            if "latency_ms" in data:
                series["barge_in_ms"].append(float(data["latency_ms"]))
        elif kind == E.TURN_ENDED and "waited_ms" in data:
            series["end_of_turn_wait_ms"].append(float(data["waited_ms"]))
        elif kind == E.AGENT_REPLY_DONE:
            counts["agent_replies"] += 1
        elif kind == E.REPLY_CANCELLED and data.get("interrupted"):
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
