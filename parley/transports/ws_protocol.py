"""The WebSocket wire format: JSON control messages and binary audio frames (see docs/protocol.md).

Only serialization lives here: parsing and validating client messages, building server messages, the
binary frame header, and the mapping from engine timeline events to what a client is told. The
connection that carries these (limits, sessions, reconnection) is ``parley/server/ws.py``.
"""

from __future__ import annotations

import json
import math
import re
import struct
from enum import StrEnum
from typing import Annotated, Any, Literal

import numpy as np
import structlog
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from parley.audio.frame import AudioFrame
from parley.engine import event_payloads as ev
from parley.engine.event_payloads import MalformedPayload
from parley.engine.events import Event, EventType
from parley.inputs import SafeStr

log = structlog.get_logger("parley.transports")

PROTOCOL_VERSION = 1
SUPPORTED_SAMPLE_RATES = (8000, 16000, 22050, 24000, 32000, 44100, 48000)

# --- binary audio frames ------------------------------------------------------------------------------

_HEADER = struct.Struct("<BBHId")
HEADER_BYTES = _HEADER.size  # 16: keeps the PCM payload aligned for Int16Array views in browsers
AUDIO_KIND = 1
_PCM_DTYPE = np.dtype("<i2")
_SWAP = np.dtype(np.int16) != _PCM_DTYPE  # a big-endian host


class FrameError(ValueError):
    """A binary message that is not a well-formed audio frame."""


def encode_audio(seq: int, timestamp_ms: float, pcm_bytes: bytes) -> bytes:
    """Header (version, kind, reserved, uint32 seq, float64 timestamp ms) then PCM16 little-endian."""
    return _HEADER.pack(PROTOCOL_VERSION, AUDIO_KIND, 0, seq & 0xFFFFFFFF, timestamp_ms) + pcm_bytes


def encode_frame(seq: int, frame: AudioFrame) -> bytes:
    return encode_audio(seq, frame.timestamp * 1000.0, frame.to_bytes())


def decode_audio(data: bytes) -> tuple[int, float, np.ndarray[Any, np.dtype[np.int16]]]:
    """``(seq, timestamp_ms, samples)`` of a binary frame, or ``FrameError`` saying what is wrong."""
    if len(data) < HEADER_BYTES:
        raise FrameError(f"audio frame has {len(data)} bytes, fewer than the {HEADER_BYTES}-byte header")
    version, kind, _, seq, timestamp_ms = _HEADER.unpack_from(data)
    if data[:1] == b"{":
        raise FrameError("a JSON message in a binary frame; control messages go in text frames")
    if version != PROTOCOL_VERSION or kind != AUDIO_KIND:
        raise FrameError(
            f"unknown frame version {version} / kind {kind} (expected {PROTOCOL_VERSION}/{AUDIO_KIND})"
        )
    if (len(data) - HEADER_BYTES) % 2:
        raise FrameError(f"PCM16 payload must have an even number of bytes, got {len(data) - HEADER_BYTES}")
    # A read-only view of the message, no copy (every stage downstream copies what it keeps).
    samples = np.frombuffer(data, dtype=_PCM_DTYPE, offset=HEADER_BYTES)
    if _SWAP:
        samples = samples.astype(np.int16)
    return int(seq), float(timestamp_ms), samples


# --- client -> server ---------------------------------------------------------------------------------


class _ClientMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _mono(channels: int) -> int:
    """Mono only: ``2`` was always refused, in these words (now after the strict integer check)."""
    if channels != 1:
        raise PydanticCustomError("literal_error", "Input should be 1 (audio is mono)")
    return channels


class AudioFormat(_ClientMessage):
    encoding: Literal["pcm16"] = "pcm16"
    sample_rate: int = Field(16000, strict=True)
    """Strict: ``"16000"`` or ``true`` (which Python takes for 1) is a client bug to report, not guess."""
    channels: Annotated[int, Field(strict=True), AfterValidator(_mono)] = 1
    """Strict like ``sample_rate``: ``true`` or ``1.0`` is refused, not taken for mono (``Literal[1]``
    alone let pydantic coerce them)."""


class OutputFormat(_ClientMessage):
    sample_rate: int | None = Field(None, strict=True)
    """Rate of the agent audio the client wants (default: the server's configured rate)."""


class Start(_ClientMessage):
    type: Literal["start"]
    agent: str | None = Field(None, max_length=200)
    token: str | None = Field(None, max_length=200)
    """Single-use session token from ``POST /v1/agents/{id}/sessions``: run the call it was minted for,
    with that agent version. Without one, ``agent`` must name a public agent."""
    call: str | None = Field(None, max_length=100)
    """Deprecated (a session id is no credential): refused with ``unauthorized``; send ``token``."""
    audio: AudioFormat = Field(default_factory=AudioFormat)
    output: OutputFormat = Field(default_factory=OutputFormat)


class Resume(_ClientMessage):
    type: Literal["resume"]
    session_id: str = Field(max_length=100)
    token: str = Field(max_length=200)
    last_audio_seq: int = Field(-1, ge=-1)
    """Highest agent audio frame the client received (-1: none)."""
    last_event_seq: int = Field(-1, ge=-1)
    """Highest JSON message ``seq`` the client received; later ones are sent again."""


class Text(_ClientMessage):
    type: Literal["text"]
    text: SafeStr = Field(min_length=1, max_length=4000)


class Interrupt(_ClientMessage):
    type: Literal["interrupt"]


class End(_ClientMessage):
    type: Literal["end"]


class Ping(_ClientMessage):
    type: Literal["ping"]
    id: int | str | None = None


ClientMessage = Annotated[Start | Resume | Text | Interrupt | End | Ping, Field(discriminator="type")]
_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES = ("start", "resume", "text", "interrupt", "end", "ping")


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    INVALID_MESSAGE = "invalid_message"
    UNKNOWN_MESSAGE = "unknown_message"
    MESSAGE_TOO_LARGE = "message_too_large"
    NOT_STARTED = "not_started"
    ALREADY_STARTED = "already_started"
    UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"
    BAD_AUDIO_FRAME = "bad_audio_frame"
    FRAME_TOO_LARGE = "frame_too_large"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_AGENT = "unknown_agent"
    UNKNOWN_CALL = "unknown_call"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN_ORIGIN = "forbidden_origin"
    RESUME_FAILED = "resume_failed"
    CAPACITY = "capacity"
    REALTIME_DISABLED = "realtime_disabled"
    SHUTTING_DOWN = "shutting_down"
    NOT_READY = "not_ready"
    REPLACED = "replaced"
    ENGINE = "engine"
    INTERNAL = "internal"


class ProtocolError(Exception):
    """A client message the server rejects; becomes an ``error`` event, never a server failure."""

    def __init__(self, code: ErrorCode, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


MAX_NESTING = 8
"""Deepest ``[``/``{`` nesting a control message may have. Control messages are flat (``start`` is the
deepest, at 2); deep nesting only serves to exhaust the JSON parser's recursion."""
MAX_INT_DIGITS = 20
"""Longest integer literal accepted: every integer in the protocol fits 64 bits, and long ones cost
quadratic time to convert."""

# A JSON string (possibly unterminated: the parser reports that), matched without backtracking so a
# hostile message costs linear time; brackets inside strings are text, not nesting.
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\[\s\S])*+"?')
_DEPTH_STEP = np.zeros(256, np.int32)
_DEPTH_STEP[[ord("["), ord("{")]] = 1
_DEPTH_STEP[[ord("]"), ord("}")]] = -1


def _nesting(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest, in linear time and without recursion."""
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return 0  # too few brackets to nest too deep: the common case, no scan
    outside_strings = _JSON_STRING.sub("", text).encode("utf-8", "surrogatepass")
    steps = _DEPTH_STEP[np.frombuffer(outside_strings, np.uint8)]
    return int(np.cumsum(steps).max(initial=0))


def _no_constants(name: str) -> Any:
    raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {name} is not a JSON number")


def _bounded_int(literal: str) -> int:
    if len(literal.lstrip("-")) > MAX_INT_DIGITS:
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, f"an integer of {len(literal)} digits; at most {MAX_INT_DIGITS}"
        )
    return int(literal)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"the number {literal[:30]} is out of range")
    return value


def _check_strings(value: Any) -> None:
    """NUL characters and lone surrogates (``\\u0000``, ``\\ud800``) parse as JSON but break what the
    text is handed to (PostgreSQL, UTF-8 encoders, the LLM's HTTP request)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "strings may not contain NUL characters")
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise ProtocolError(
                    ErrorCode.INVALID_MESSAGE, "strings must be valid Unicode (no lone surrogates)"
                ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


def _loads(text: str) -> Any:
    if "\x00" in text:  # outside strings JSON rejects it anyway; inside one it is a raw control character
        raise ProtocolError(ErrorCode.BAD_JSON, "message is not valid JSON: it contains a NUL character")
    depth = _nesting(text)
    if depth > MAX_NESTING:
        raise ProtocolError(
            ErrorCode.BAD_JSON,
            f"message nests {depth} levels deep; control messages nest at most {MAX_NESTING}",
        )
    try:
        return json.loads(
            text, parse_constant=_no_constants, parse_int=_bounded_int, parse_float=_finite_float
        )
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {exc}") from None
    except RecursionError:  # not reachable past the nesting check; kept so no input can end a connection
        raise ProtocolError(ErrorCode.BAD_JSON, "message nests too deeply") from None


def parse_client_message(text: str) -> ClientMessage:
    """Validate one JSON text message, raising ``ProtocolError`` with a code a client can act on."""
    raw = _loads(text)
    if not isinstance(raw, dict):
        raise ProtocolError(
            ErrorCode.INVALID_MESSAGE, "a control message must be a JSON object with a 'type'"
        )
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in CLIENT_TYPES:
        shown = repr(kind)
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise ProtocolError(
            ErrorCode.UNKNOWN_MESSAGE,
            f"unknown message type {shown}; expected one of "
            f"{', '.join(CLIENT_TYPES)} (audio goes in binary frames)",
        )
    _check_strings(raw)
    try:
        return _client_adapter.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or kind}: {e['msg']}{_sent_as(e)}" for e in exc.errors()
        )
        raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"invalid '{kind}' message: {problems}") from None


_JSON_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "true/false"),  # before int: a bool is an int to Python
    (str, "a string"),
    (float, "a number with a decimal point or exponent"),
    (int, "a number"),
    (list, "an array"),
    (dict, "an object"),
    (type(None), "null"),
)


def _sent_as(error: Any) -> str:
    """For a wrong type, which JSON type was sent (never the value: it is the client's own)."""
    if not str(error.get("type", "")).endswith("_type"):
        return ""
    sent = error.get("input")
    kind = next((name for cls, name in _JSON_KINDS if isinstance(sent, cls)), None)
    return "" if kind is None else f", not {kind}"


# --- server -> client ---------------------------------------------------------------------------------


def server_message(type_: str, **fields: Any) -> dict[str, Any]:
    """A server message; the connection adds ``seq`` when it is sent."""
    return {"type": type_, **fields}


_FAILED = {
    "asr": "speech recognition failed",
    "llm": "the language model failed",
    "tts": "speech synthesis failed",
    "s2s": "the speech-to-speech model failed",
}
"""What a client is told of an engine error, by the stage that failed."""


def error_message(code: ErrorCode, message: str, *, fatal: bool = False, **detail: Any) -> dict[str, Any]:
    return server_message("error", code=str(code), message=message, fatal=fatal, **detail)


def dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


def messages_for(event: Event) -> list[dict[str, Any]]:
    """What a client is told about an engine event (often nothing: the timeline keeps everything)."""
    try:
        message = _message_for(event)
    except MalformedPayload as exc:  # a hand-made event: the client misses it, the connection goes on
        log.warning("event not sent to the client", event_type=exc.event_type, missing=exc.missing)
        return []
    out = [message] if message is not None else []
    if event.type is EventType.AGENT_AUDIO_STARTED:
        started = event.payload(ev.AgentAudioStarted)
        if started.v2v_ms is not None:
            out.append(server_message("metrics", reply_id=started.reply_id, voice_to_voice_ms=started.v2v_ms))
    return out


def _message_for(event: Event) -> dict[str, Any] | None:
    kind = event.type
    if kind is EventType.STATE_CHANGED:
        state = event.payload(ev.StateChanged)
        return server_message("state", state=state.new, previous=state.old)
    if kind is EventType.TRANSCRIPT_INTERIM:
        interim = event.payload(ev.TranscriptInterim)
        return server_message(
            "transcript", role="user", final=False, text=interim.text, stable=interim.stable
        )
    if kind is EventType.TRANSCRIPT_FINAL:
        final = event.payload(ev.TranscriptFinal)
        return server_message("transcript", role="user", final=True, text=final.text, source=final.source)
    if kind is EventType.AGENT_TEXT:
        said = event.payload(ev.AgentText)
        return server_message("agent.text", reply_id=said.reply_id, segment=said.segment, text=said.text)
    if kind is EventType.AGENT_AUDIO_STARTED:
        return server_message(
            "agent.audio", status="started", reply_id=event.payload(ev.AgentAudioStarted).reply_id
        )
    if kind is EventType.AGENT_AUDIO_STOPPED:
        stopped = event.payload(ev.AgentAudioStopped)
        return server_message(
            "agent.audio", status="stopped", reply_id=stopped.reply_id, reason=stopped.reason
        )
    if kind is EventType.REPLY_CANCELLED:
        cancelled = event.payload(ev.ReplyCancelled)
        return server_message(
            "agent.cancelled",
            reply_id=cancelled.reply_id,
            reason=cancelled.reason,
            heard_text=cancelled.heard_text,
        )
    if kind is EventType.SPEECH_STARTED:
        return server_message("speech", status="started")
    if kind is EventType.SPEECH_STOPPED:
        return server_message("speech", status="stopped")
    if kind is EventType.BARGE_IN:
        barge_in = event.payload(ev.BargeIn)
        return server_message("barge_in", reply_id=barge_in.reply_id, latency_ms=barge_in.latency_ms)
    if kind is EventType.TOOL_CALL:
        call = event.payload(ev.ToolCalled)
        return server_message("tool.call", tool=call.tool, call_id=call.call_id, arguments=call.arguments)
    if kind is EventType.TOOL_RESULT:
        result = event.payload(ev.ToolResult)
        return server_message(
            "tool.result",
            tool=result.tool,
            call_id=result.call_id,
            ok=result.ok,
            result=result.result,
            latency_ms=result.latency_ms,
        )
    if kind is EventType.LLM_FIRST_TOKEN:
        token = event.payload(ev.LlmFirstToken)
        return server_message("metrics", reply_id=token.reply_id, llm_first_token_ms=token.latency_ms)
    if kind is EventType.TTS_FIRST_BYTE:
        byte = event.payload(ev.TtsFirstByte)
        return server_message("metrics", reply_id=byte.reply_id, tts_first_byte_ms=byte.latency_ms)
    if kind is EventType.AUDIO_UNDERRUN:
        underrun = event.payload(ev.AudioUnderrun)
        return server_message("metrics", reply_id=underrun.reply_id, underrun_ms=underrun.gap_ms)
    if kind is EventType.ERROR:
        # The client may be anyone: it learns which part failed, never the provider's own words (its
        # URL, what its server answered), which stay on the call's timeline for the organization.
        error = event.payload(ev.Error)
        message = _FAILED.get(error.stage or "", "an engine component failed")
        return error_message(ErrorCode.ENGINE, message, where=error.where)
    return None
