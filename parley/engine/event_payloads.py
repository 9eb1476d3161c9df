"""Typed payloads of timeline events: one frozen dataclass per event type, read off an event's ``data``.

The wire stays what it was (``Event.data`` is a plain dict: ``to_json()``, stored rows and the WebSocket
carry the same keys); these classes are how code *reads* it, so mypy checks every field a consumer uses.

Reading is tolerant, so old JSONL files and stored calls still load: keys a class does not know are
ignored, a missing optional field takes its default (the value readers have always assumed when the key
was absent). A field without a default is one every emitter has always set and the event means nothing
without; its absence raises ``MalformedPayload``. Reading an event as the class of another type raises
``WrongEventType``. Event types with no class here (``metrics``, or a type from a newer version) are
recorded and forwarded like any other; they simply have no typed reader.

``problems()`` checks one event against its class (required fields, value types, undeclared keys): the
conformance tests run it over every event a real session emits.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Self, TypeVar

import structlog

from parley.engine.events import EventType

log = structlog.get_logger("parley.engine")


class Recorded(Protocol):
    """Anything that carries an event: an ``Event``, a timeline ``Envelope``, a stored ``CallEvent`` row."""

    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...


class PayloadError(Exception):
    """An event could not be read as the payload class asked for."""


class WrongEventType(PayloadError, TypeError):
    """The event is of another type than the payload class reads (a reader's bug)."""


class MalformedPayload(PayloadError, ValueError):
    """The event lacks a field every emitter sets (a hand-made or damaged record)."""

    def __init__(self, event_type: str, missing: Sequence[str]) -> None:
        super().__init__(f"{event_type} event without {', '.join(missing)}")
        self.event_type = event_type
        self.missing = tuple(missing)


def _key(name: str) -> dict[str, str]:
    """Field metadata for a wire key that is not a valid field name (``from``)."""
    return {"key": name}


@dataclass(frozen=True, slots=True)
class Payload:
    """Base of the payload classes; ``EVENT`` is the event type a class reads."""

    EVENT: ClassVar[EventType]

    @classmethod
    def of(cls, record: Recorded) -> Self:
        """The payload of ``record``, which must be of this class's event type."""
        if record.type != cls.EVENT:
            raise WrongEventType(f"{cls.__name__} reads {cls.EVENT} events, not {record.type}")
        return cls.from_data(record.data)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Self:
        """The payload from an event's data (unknown keys ignored, missing optional ones defaulted)."""
        fields = _fields(cls)
        missing = [key for _, key, required in fields if required and key not in data]
        if missing:
            raise MalformedPayload(str(cls.EVENT), missing)
        values = {name: data[key] for name, key, _ in fields if key in data}
        return cls(**values)


P = TypeVar("P", bound=Payload)


def payload(record: Recorded, cls: type[P]) -> P:
    """``record``'s data as ``cls`` (``WrongEventType``, ``MalformedPayload``: see the module)."""
    return cls.of(record)


def payload_or_none(record: Recorded, cls: type[P]) -> P | None:
    """As ``payload``, but a record missing a required field is logged and read as ``None``: for readers of
    stored calls and live subscribers, which must get past one damaged record."""
    try:
        return cls.of(record)
    except MalformedPayload as exc:
        log.warning("timeline event without a required field", event_type=exc.event_type, missing=exc.missing)
        return None


# --- the session ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionStarted(Payload):
    EVENT = EventType.SESSION_STARTED
    agent: str
    engine: str | None = None
    """A speech-to-speech session's engine (it is metered by its length)."""
    language: str | None = None
    voice: str | None = None
    room_id: str | None = None
    """A coached room's id and name."""
    name: str | None = None


@dataclass(frozen=True, slots=True)
class SessionResumed(Payload):
    """``session.resumed``: a client whose connection dropped came back and took the session up again.
    The agent's playout held while it was away, so a reply under way is still to come, from where the
    client stopped hearing it: the fields say which, so the client can tell it apart from the next one."""

    EVENT = EventType.SESSION_RESUMED
    reply_id: str | None = None
    """The reply being answered when the client came back (none: the agent was not answering) …"""
    answering: str | None = None
    """… and the caller's words it answers (none for a line the agent said of its own, the greeting)."""
    away_ms: float | None = None
    """How long the session had no client (none when it moved from a connection still open)."""


@dataclass(frozen=True, slots=True)
class SessionEnded(Payload):
    EVENT = EventType.SESSION_ENDED
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged(Payload):
    EVENT = EventType.STATE_CHANGED
    old: str
    new: str
    turn: str | None = None
    """The finer turn state behind the public one (not in calls recorded before it existed)."""


@dataclass(frozen=True, slots=True)
class SpeechStarted(Payload):
    EVENT = EventType.SPEECH_STARTED
    at: float


@dataclass(frozen=True, slots=True)
class SpeechStopped(Payload):
    EVENT = EventType.SPEECH_STOPPED
    at: float


@dataclass(frozen=True, slots=True)
class TranscriptInterim(Payload):
    EVENT = EventType.TRANSCRIPT_INTERIM
    text: str
    stable: bool = False
    """The turn's final words at a pause, before the turn is known to have ended."""


@dataclass(frozen=True, slots=True)
class TranscriptFinal(Payload):
    EVENT = EventType.TRANSCRIPT_FINAL
    text: str
    source: str | None = None
    """``speech``, ``text`` (typed), ``keypad`` …"""
    audio_seconds: float | None = None
    recognition: int | None = None
    """Which hearing of the caller's speech made it (the session numbers them): recognition hops that
    name the same number say which recogniser heard ``audio_seconds``, which is what they are priced at."""


@dataclass(frozen=True, slots=True)
class Dtmf(Payload):
    EVENT = EventType.DTMF
    digit: str
    participant_id: str | None = None


@dataclass(frozen=True, slots=True)
class TurnEnded(Payload):
    EVENT = EventType.TURN_ENDED
    speech_end: float
    waited_ms: float | None = None
    completeness: float | None = None
    acoustic: float | None = None
    required_silence_ms: int | None = None


@dataclass(frozen=True, slots=True)
class TurnResumed(Payload):
    EVENT = EventType.TURN_RESUMED
    at: float | None = None
    pause_ms: int | None = None
    merged_with: str | None = None
    """Set when a confirmed barge-in continues the turn the agent had started answering."""
    completeness: float | None = None
    """How finished the words before the pause were judged (None if the pause ended first)."""


@dataclass(frozen=True, slots=True)
class BargeIn(Payload):
    EVENT = EventType.BARGE_IN
    reply_id: str
    at: float | None = None
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class BargeInDismissed(Payload):
    EVENT = EventType.BARGE_IN_DISMISSED
    text: str


@dataclass(frozen=True, slots=True)
class HandoverStarted(Payload):
    EVENT = EventType.HANDOVER_STARTED
    to: str | None = None


@dataclass(frozen=True, slots=True)
class HandoverEnded(Payload):
    EVENT = EventType.HANDOVER_ENDED
    by: str | None = None


@dataclass(frozen=True, slots=True)
class SupervisorNote(Payload):
    EVENT = EventType.SUPERVISOR_NOTE
    kind: str
    """``whisper`` (the caller did not hear it) or ``said``."""
    by: str
    text: str


@dataclass(frozen=True, slots=True)
class LanguageDetected(Payload):
    EVENT = EventType.LANGUAGE_DETECTED
    language: str
    probability: float | None = None
    voice: str | None = None


@dataclass(frozen=True, slots=True)
class InputOverflow(Payload):
    """A session counts the frames it dropped; a room names the participant and its buffer."""

    EVENT = EventType.INPUT_OVERFLOW
    dropped_frames: int | None = None
    participant_id: str | None = None
    max_s: float | None = None


@dataclass(frozen=True, slots=True)
class Error(Payload):
    EVENT = EventType.ERROR
    where: str | None = None
    error: str | None = None
    stage: str | None = None
    reply_id: str | None = None
    segment: int | None = None
    attempt: int | None = None
    participant_id: str | None = None
    code: str | None = None
    max_seconds: float | None = None

    @property
    def unsaid(self) -> tuple[str, int] | None:
        """For the voice's failure on a reply's clause (stage ``tts``, with ``reply_id`` and
        ``segment``): that reply and clause. The clause, and every later clause of the reply announced
        (``agent.text``) before this event, were never said, nor synthesized whole; a clause announced
        after it (the agent's error message, said in their place) was. ``None`` for any other error."""
        if self.stage != "tts" or self.reply_id is None or self.segment is None:
            return None
        return self.reply_id, self.segment


# --- replies ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LlmRequest(Payload):
    EVENT = EventType.LLM_REQUEST
    reply_id: str
    round: int = 0
    messages: int | None = None
    tool_choice: str | None = None
    """The tool whose call was asked for (``engine/tool_requests.py``); None: the model chose."""


@dataclass(frozen=True, slots=True)
class LlmFirstToken(Payload):
    EVENT = EventType.LLM_FIRST_TOKEN
    reply_id: str
    round: int = 0
    latency_ms: float | None = None


@dataclass(frozen=True, slots=True)
class LlmCompleted(Payload):
    """Token counts are running totals of the reply. A speech-to-speech engine adds its response's
    ``status`` and audio token counts (its ``input_tokens`` counts both)."""

    EVENT = EventType.LLM_COMPLETED
    reply_id: str
    round: int = 0
    text: str = ""
    tool_calls: Sequence[str] = ()
    input_tokens: int = 0
    output_tokens: int = 0
    status: str | None = None
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class KnowledgeMiss(Payload):
    EVENT = EventType.KNOWLEDGE_MISS
    reply_id: str
    withheld: str = ""
    support: float | None = None
    """For a "yes" no fact backs: its similarity to the closest fact (None: a question off knowledge)."""
    invented: list[str] | None = None
    """For a confirmation of an action: the days, months or numbers in it that nobody gave."""


@dataclass(frozen=True, slots=True)
class ToolRequested(Payload):
    EVENT = EventType.TOOL_REQUESTED
    reply_id: str
    tool: str
    arguments: dict[str, Any] | None = None
    """What the model filled in (None: it gave no call of that tool)."""
    accepted: bool = False


@dataclass(frozen=True, slots=True)
class AgentText(Payload):
    EVENT = EventType.AGENT_TEXT
    reply_id: str
    text: str
    segment: int | None = None
    ready_at: float | None = None
    """When the clause was ready to be spoken (the model's words are announced only once the turn ends)."""


@dataclass(frozen=True, slots=True)
class TtsFirstByte(Payload):
    EVENT = EventType.TTS_FIRST_BYTE
    reply_id: str
    latency_ms: float | None = None
    text: str | None = None


@dataclass(frozen=True, slots=True)
class AgentAudioStarted(Payload):
    EVENT = EventType.AGENT_AUDIO_STARTED
    reply_id: str
    at: float | None = None
    v2v_ms: float | None = None
    """End of the caller's speech to the first agent audio out (negative: the agent cut in)."""


@dataclass(frozen=True, slots=True)
class AgentAudioStopped(Payload):
    EVENT = EventType.AGENT_AUDIO_STOPPED
    reply_id: str
    at: float | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class AgentAudioPlayed(Payload):
    """A clause finished playing; what had been heard of the reply by then (for recovery)."""

    EVENT = EventType.AGENT_AUDIO_PLAYED
    reply_id: str
    segment: int | None = None
    at: float | None = None
    heard_text: str = ""


@dataclass(frozen=True, slots=True)
class AgentReplyDone(Payload):
    EVENT = EventType.AGENT_REPLY_DONE
    reply_id: str
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class ReplyCancelled(Payload):
    EVENT = EventType.REPLY_CANCELLED
    reply_id: str
    reason: str | None = None
    heard_text: str = ""
    interrupted: bool = False
    heard_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ToolCalled(Payload):
    """``tool.call``: the model's call, as it is about to run."""

    EVENT = EventType.TOOL_CALL
    tool: str
    call_id: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    reply_id: str | None = None
    dropped: list[str] = field(default_factory=list)
    """Optional arguments the model filled with a phone number or e-mail address nobody gave: left out."""


@dataclass(frozen=True, slots=True)
class ToolResult(Payload):
    EVENT = EventType.TOOL_RESULT
    tool: str
    call_id: str
    ok: bool
    result: str | None = None
    latency_ms: float | None = None
    reply_id: str | None = None


@dataclass(frozen=True, slots=True)
class AudioUnderrun(Payload):
    EVENT = EventType.AUDIO_UNDERRUN
    reply_id: str | None = None
    gap_ms: float | None = None


# --- providers ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProviderFailover(Payload):
    EVENT = EventType.PROVIDER_FAILOVER
    role: str
    from_: str = field(metadata=_key("from"))
    to: str
    reason: str = ""
    after_ms: float | None = None
    fallback: int | None = None
    """Which of the role's ``fallbacks`` ``to`` is (0: the first); names may repeat."""
    reply_id: str | None = None
    """The reply whose request hopped (a voice's or language model's; none for recognition) …"""
    segment: int | None = None
    """… and, for the voice, the clause: the last hop of a clause names the voice that said it (unless
    an ``error`` says the clause was never said), which is what its characters are priced at."""
    recognition: int | None = None
    """For recognition, the hearing whose stream hopped (``transcript.final`` names it too): its last hop
    names the recogniser that heard the turn, which is what its seconds are priced at."""


@dataclass(frozen=True, slots=True)
class ProviderBreaker(Payload):
    EVENT = EventType.PROVIDER_BREAKER
    role: str
    provider: str
    state: str
    """``closed``, ``open`` or ``half_open``."""
    previous: str | None = None
    failures: int | None = None


# --- rooms and coaching -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoomJoined(Payload):
    EVENT = EventType.ROOM_JOINED
    participant_id: str
    role: str
    mode: str
    name: str = ""


@dataclass(frozen=True, slots=True)
class RoomLeft(Payload):
    EVENT = EventType.ROOM_LEFT
    participant_id: str
    role: str | None = None
    reason: str | None = None
    error: str | None = None
    """Why its line failed (``reason: sink_failed``)."""


@dataclass(frozen=True, slots=True)
class RoomModeChanged(Payload):
    EVENT = EventType.ROOM_MODE_CHANGED
    participant_id: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class RoomUtterance(Payload):
    EVENT = EventType.ROOM_UTTERANCE
    participant_id: str
    role: str
    text: str
    start: float
    end: float
    audio_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class CoachTrigger(Payload):
    EVENT = EventType.COACH_TRIGGER
    trigger: str
    text: str = ""
    """What was said (cut to a bound)."""
    participant_id: str | None = None
    role: str | None = None
    phrase: str | None = None
    at: float | None = None
    value: float | None = None
    """A conversation metric's value when it crossed its limit."""


@dataclass(frozen=True, slots=True)
class CoachHint(Payload):
    EVENT = EventType.COACH_HINT
    trigger: str
    text: str
    source: str | None = None
    """``rule`` or ``llm``."""
    latency_ms: float | None = None
    id: str | None = None
    whisper: bool = False
    refines: bool = False
    """The model's sharper wording of a card already shown (same ``id``)."""


# --- the registry -------------------------------------------------------------------------------------------

PAYLOADS: Mapping[EventType, type[Payload]] = {
    cls.EVENT: cls
    for cls in (
        SessionStarted,
        SessionResumed,
        SessionEnded,
        StateChanged,
        SpeechStarted,
        SpeechStopped,
        TranscriptInterim,
        TranscriptFinal,
        Dtmf,
        TurnEnded,
        TurnResumed,
        BargeIn,
        BargeInDismissed,
        HandoverStarted,
        HandoverEnded,
        SupervisorNote,
        LanguageDetected,
        InputOverflow,
        Error,
        LlmRequest,
        LlmFirstToken,
        LlmCompleted,
        KnowledgeMiss,
        AgentText,
        TtsFirstByte,
        AgentAudioStarted,
        AgentAudioStopped,
        AgentAudioPlayed,
        AgentReplyDone,
        ReplyCancelled,
        ToolCalled,
        ToolResult,
        AudioUnderrun,
        ProviderFailover,
        ProviderBreaker,
        RoomJoined,
        RoomLeft,
        RoomModeChanged,
        RoomUtterance,
        CoachTrigger,
        CoachHint,
    )
}
"""Event type → its payload class. ``metrics`` has none: its data is free-form."""


def payload_class(event_type: str) -> type[Payload] | None:
    """The payload class of an event type; ``None`` for one without (or from a newer version)."""
    try:
        return PAYLOADS.get(EventType(event_type))
    except ValueError:
        return None


def problems(record: Recorded) -> list[str]:
    """What is wrong with ``record`` against its payload class: missing required fields, values of the
    wrong type, keys the class does not declare. Empty for a good record and for types without a class."""
    cls = payload_class(record.type)
    if cls is None:
        return []
    data, hints = record.data, _hints(cls)
    found: list[str] = []
    declared = set()
    for name, key, required in _fields(cls):
        declared.add(key)
        if key not in data:
            if required:
                found.append(f"{record.type}: missing {key}")
            continue
        if not _conforms(data[key], hints[name]):
            found.append(f"{record.type}: {key}={data[key]!r} is not {_shown(hints[name])}")
    found += [f"{record.type}: undeclared key {key}" for key in data if key not in declared]
    return found


# --- plumbing ---------------------------------------------------------------------------------------------


_FIELDS: dict[type[Payload], tuple[tuple[str, str, bool], ...]] = {}


def _fields(cls: type[Payload]) -> tuple[tuple[str, str, bool], ...]:
    """(field name, wire key, required) of each field of a payload class (worked out once per class)."""
    found = _FIELDS.get(cls)
    if found is None:
        found = _FIELDS[cls] = tuple(
            (
                f.name,
                str(f.metadata.get("key", f.name)),
                f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )
    return found


def _hints(cls: type[Payload]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _shown(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint)


def _conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` (as found in event data) is of the annotated type (ints pass for floats)."""
    if hint is Any:
        return True
    if hint is None or hint is type(None):
        return value is None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        return any(_conforms(value, arg) for arg in args)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (Mapping, dict):
        return isinstance(value, Mapping) and all(
            _conforms(k, args[0]) and _conforms(v, args[1]) for k, v in value.items()
        )
    if origin in (Sequence, list, tuple):
        return isinstance(value, list | tuple) and all(_conforms(item, args[0]) for item in value)
    raise TypeError(f"no check for {hint!r}")  # a payload class annotated with a type this does not know
