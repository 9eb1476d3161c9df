"""The session timeline: every event of a call, stamped on one monotonic clock.

Persistence, live monitors, analyzers, metrics and webhooks consume the timeline; the engine never calls
them directly.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol, TypeVar

import structlog

if TYPE_CHECKING:
    from parley.engine.event_payloads import Payload

log = structlog.get_logger("parley.engine")

_P = TypeVar("_P", bound="Payload")


class EventType(StrEnum):
    SESSION_STARTED = "session.started"
    SESSION_RESUMED = "session.resumed"
    """A client whose connection dropped came back (``resume``): the reply still to come, if any."""
    SESSION_ENDED = "session.ended"
    STATE_CHANGED = "state.changed"
    SPEECH_STARTED = "speech.started"
    SPEECH_STOPPED = "speech.stopped"
    TRANSCRIPT_INTERIM = "transcript.interim"
    TRANSCRIPT_FINAL = "transcript.final"
    DTMF = "user.dtmf"
    TURN_ENDED = "turn.ended"
    TURN_RESUMED = "turn.resumed"
    LLM_REQUEST = "llm.request"
    LLM_FIRST_TOKEN = "llm.first_token"
    LLM_COMPLETED = "llm.completed"
    AGENT_TEXT = "agent.text"
    TTS_FIRST_BYTE = "tts.first_byte"
    AGENT_AUDIO_STARTED = "agent.audio.started"
    AGENT_AUDIO_STOPPED = "agent.audio.stopped"
    AGENT_AUDIO_PLAYED = "agent.audio.played"
    AGENT_REPLY_DONE = "agent.reply.done"
    BARGE_IN = "barge_in"
    BARGE_IN_DISMISSED = "barge_in.dismissed"
    REPLY_CANCELLED = "reply.cancelled"
    TOOL_CALL = "tool.call"
    TOOL_RESULT = "tool.result"
    KNOWLEDGE_MISS = "knowledge.miss"
    """A grounded agent was asked about what it does not know: its model's words were not said."""
    TOOL_REQUESTED = "tool.requested"
    """A caller's request near one of the tools was put to the model as that tool's call
    (``engine/tool_requests.py``); ``accepted`` says whether its arguments were the caller's words."""
    ROOM_JOINED = "room.joined"
    """A participant (leg) joined a room: its id, role and mode."""
    ROOM_LEFT = "room.left"
    ROOM_MODE_CHANGED = "room.mode_changed"
    """Who hears a participant changed live (listen, whisper, barge, speak)."""
    ROOM_UTTERANCE = "room.utterance"
    """One participant's finished utterance, transcribed from that leg alone, with its role."""
    COACH_TRIGGER = "coach.trigger"
    """A coaching rule matched what was said (or a conversation metric crossed its limit)."""
    COACH_HINT = "coach.hint"
    """The one-line hint shown to the rep (and whispered, when enabled) for a trigger."""
    SUPERVISOR_NOTE = "supervisor.note"
    """A supervisor's words the agent was given: whispered to it (``kind: whisper``, the caller did not
    hear them) or said to the caller while the supervisor had the call (``kind: said``)."""
    HANDOVER_STARTED = "handover.started"
    """A person took the call over from the agent (a supervisor barged in): the agent listens only."""
    HANDOVER_ENDED = "handover.ended"
    """The agent has the call back."""
    LANGUAGE_DETECTED = "language.detected"
    """The caller's language, heard on their first turn (``language: auto``): the call's recogniser,
    voice and answers follow it from now on (``language``, ``probability``, ``voice``)."""
    PROVIDER_FAILOVER = "provider.failover"
    """A provider was unavailable (or its circuit open) before answering: the next of its role's chain
    was asked (``role``, ``from``, ``to``, ``reason``, ``after_ms``; what it served: ``reply_id`` and
    ``segment``, or ``recognition``)."""
    PROVIDER_BREAKER = "provider.breaker"
    """A provider's circuit breaker changed state (``role``, ``provider``, ``previous``, ``state``)."""
    AUDIO_UNDERRUN = "audio.underrun"
    INPUT_OVERFLOW = "audio.input_overflow"
    METRICS = "metrics"
    ERROR = "error"


def now() -> float:
    """The one clock of Parley: monotonic seconds."""
    return time.monotonic()


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    session_id: str
    t: float = field(default_factory=now)
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": str(self.type), "session_id": self.session_id, "t": self.t, **self.data}

    def payload(self, cls: builtins.type[_P]) -> _P:
        """``data`` read as ``cls`` (``event.payload(TranscriptFinal).text``): typed, so mypy checks the
        fields a consumer reads. Raises ``WrongEventType`` for an event of another type; see
        ``event_payloads``."""
        return cls.of(self)


class TimelineSink(Protocol):
    def emit(self, event: Event) -> None:
        """Record an event; must not block (the engine calls it on the event loop)."""
        ...


class Timeline:
    """In-process timeline: keeps the events and fans them out to subscribers synchronously.

    A subscriber that raises is logged once and dropped, so a broken consumer never
    breaks the call.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []

    def subscribe(self, callback: Callable[[Event], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    def emit(self, event: Event) -> None:
        self.events.append(event)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a consumer's bug must not end the call
                self._subscribers.remove(callback)
                log.exception(
                    "timeline subscriber failed and was removed",
                    session_id=event.session_id,
                    event_type=str(event.type),
                    subscriber=repr(callback),
                )

    def of_type(self, *types: EventType) -> list[Event]:
        return [e for e in self.events if e.type in types]


class JsonlWriter:
    """Timeline subscriber that appends each event as one JSON line, with time relative to ``origin``."""

    def __init__(self, path: Path, origin: float) -> None:
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self._origin = origin

    def __call__(self, event: Event) -> None:
        record = event.to_json()
        record["t_ms"] = round((event.t - self._origin) * 1000, 1)
        self._file.write(json.dumps(record, default=str) + "\n")

    def close(self) -> None:
        self._file.close()
