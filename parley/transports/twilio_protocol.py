"""Twilio Media Streams' wire format: the JSON messages of a bidirectional ``<Connect><Stream>``.

Only serialization lives here (no I/O): parsing what Twilio sends into typed messages, and building what
Parley sends back. The phone leg that uses them is ``parley/transports/twilio_media.py``.

Message shapes follow https://www.twilio.com/docs/voice/media-streams/websocket-messages ("WebSocket
messages from Twilio": connected, start, media, dtmf, stop, mark; "to Twilio": media, mark, clear).
Twilio sends every number in ``sequenceNumber`` and ``media`` (``chunk``, ``timestamp``) as a string.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

ULAW_RATE = 8000
FRAME_MS = 20
FRAME_BYTES = ULAW_RATE * FRAME_MS // 1000
"""One 20 ms μ-law frame: what Twilio puts in every inbound ``media`` message."""
MAX_MESSAGE_CHARS = 64 * 1024
"""A media message is ~0.3 KB and ``start`` grows with its custom parameters; nothing Twilio sends is
near this."""
MAX_DEPTH = 6
"""Deepest nesting Twilio's messages use is 3 (``start.mediaFormat``)."""
MAX_PARAMETERS = 64
MAX_INT = 2**63 - 1

EVENTS = ("connected", "start", "media", "dtmf", "stop", "mark")


class TwilioProtocolError(ValueError):
    """A message from Twilio that cannot be used; the leg logs it (with ``kind``) and skips it."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


# --- typed messages (Twilio -> Parley) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class MediaFormat:
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class Start:
    account_sid: str
    call_sid: str
    stream_sid: str
    tracks: tuple[str, ...]
    custom_parameters: dict[str, str] = field(hash=False)
    media_format: MediaFormat
    sequence_number: int


@dataclass(frozen=True, slots=True)
class Media:
    track: str
    sequence_number: int
    chunk: int
    """Counts media messages only (1, 2, …), so it has no gaps where a dtmf or mark message came between."""
    timestamp_ms: int
    payload: bytes
    """μ-law, 8 kHz, mono: one 20 ms frame."""


@dataclass(frozen=True, slots=True)
class Mark:
    name: str


@dataclass(frozen=True, slots=True)
class Dtmf:
    digit: str
    track: str


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str


TwilioMessage = Connected | Start | Media | Mark | Dtmf | Stop


# --- validation of the raw JSON --------------------------------------------------------------------------


class _Raw(BaseModel):
    """Lax mode: Twilio's numeric strings ("42") validate as ints."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class _RawConnected(_Raw):
    protocol: str = Field("", max_length=100)
    version: str = Field("", max_length=100)


class _RawMediaFormat(_Raw):
    encoding: str = Field(max_length=100)
    sample_rate: int = Field(alias="sampleRate", ge=0, le=MAX_INT)
    channels: int = Field(ge=0, le=MAX_INT)


class _RawStartBody(_Raw):
    account_sid: str = Field(alias="accountSid", max_length=64)
    call_sid: str = Field(alias="callSid", min_length=1, max_length=64)
    stream_sid: str = Field("", alias="streamSid", max_length=64)
    tracks: tuple[str, ...] = Field((), max_length=4)
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")
    media_format: _RawMediaFormat = Field(alias="mediaFormat")

    @field_validator("custom_parameters")
    @classmethod
    def _few_parameters(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_PARAMETERS:
            raise ValueError(f"at most {MAX_PARAMETERS} custom parameters")
        return value


class _RawStart(_Raw):
    sequence_number: int = Field(0, alias="sequenceNumber", ge=0, le=MAX_INT)
    stream_sid: str = Field("", alias="streamSid", max_length=64)
    start: _RawStartBody


class _RawMediaBody(_Raw):
    track: str = Field("inbound", max_length=32)
    chunk: int = Field(ge=0, le=MAX_INT)
    timestamp: int = Field(ge=0, le=MAX_INT)
    payload: str


class _RawMedia(_Raw):
    sequence_number: int = Field(0, alias="sequenceNumber", ge=0, le=MAX_INT)
    media: _RawMediaBody


class _RawMarkBody(_Raw):
    name: str = Field(max_length=256)


class _RawMark(_Raw):
    mark: _RawMarkBody


class _RawDtmfBody(_Raw):
    digit: str = Field(min_length=1, max_length=1)
    track: str = Field("inbound_track", max_length=32)


class _RawDtmf(_Raw):
    dtmf: _RawDtmfBody


class _RawStopBody(_Raw):
    call_sid: str = Field("", alias="callSid", max_length=64)


class _RawStop(_Raw):
    stop: _RawStopBody = Field(default_factory=lambda: _RawStopBody())


def _depth(value: Any) -> int:
    """How deeply ``value`` nests, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            deepest = max(deepest, level)
            stack.extend((v, level + 1) for v in item)
    return deepest


def _loads(text: str | bytes) -> dict[str, Any]:
    if len(text) > MAX_MESSAGE_CHARS:
        raise TwilioProtocolError(
            "too_large", f"message of {len(text)} characters; at most {MAX_MESSAGE_CHARS}"
        )
    try:
        raw = json.loads(text)
    except RecursionError:
        raise TwilioProtocolError("too_deep", "message nests too deeply") from None
    except ValueError as exc:  # JSONDecodeError, and bytes that are not UTF-8
        raise TwilioProtocolError("bad_json", f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise TwilioProtocolError("bad_json", "a Media Streams message is a JSON object")
    if _depth(raw) > MAX_DEPTH:
        raise TwilioProtocolError("too_deep", f"message nests deeper than {MAX_DEPTH} levels")
    return raw


def _ulaw_frame(payload: str) -> bytes:
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise TwilioProtocolError("bad_payload", "media payload is not valid base64") from None
    if len(data) != FRAME_BYTES:
        raise TwilioProtocolError(
            "bad_payload",
            f"media payload of {len(data)} bytes; Twilio sends one 20 ms μ-law frame ({FRAME_BYTES} bytes)",
        )
    return data


def parse_message(text: str | bytes) -> TwilioMessage:
    """One message from Twilio, typed; ``TwilioProtocolError`` says why one cannot be used."""
    raw = _loads(text)
    event = raw.get("event")
    if not isinstance(event, str) or event not in EVENTS:
        shown = repr(event)
        shown = shown if len(shown) <= 40 else shown[:40] + "..."
        raise TwilioProtocolError(
            "unknown_event", f"unknown event {shown}; expected one of {', '.join(EVENTS)}"
        )
    try:
        if event == "media":
            media = _RawMedia.model_validate(raw)
            body = media.media
            return Media(
                track=body.track,
                sequence_number=media.sequence_number,
                chunk=body.chunk,
                timestamp_ms=body.timestamp,
                payload=_ulaw_frame(body.payload),
            )
        if event == "mark":
            return Mark(_RawMark.model_validate(raw).mark.name)
        if event == "dtmf":
            dtmf = _RawDtmf.model_validate(raw).dtmf
            return Dtmf(dtmf.digit, dtmf.track)
        if event == "start":
            start = _RawStart.model_validate(raw)
            s, fmt = start.start, start.start.media_format
            return Start(
                account_sid=s.account_sid,
                call_sid=s.call_sid,
                stream_sid=s.stream_sid or start.stream_sid,
                tracks=s.tracks,
                custom_parameters=dict(s.custom_parameters),
                media_format=MediaFormat(fmt.encoding, fmt.sample_rate, fmt.channels),
                sequence_number=start.sequence_number,
            )
        if event == "stop":
            return Stop(_RawStop.model_validate(raw).stop.call_sid)
        connected = _RawConnected.model_validate(raw)
        return Connected(connected.protocol, connected.version)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or event}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise TwilioProtocolError("invalid", f"invalid '{event}' message: {problems}") from None


# --- messages to Twilio ------------------------------------------------------------------------------------


def _dumps(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"))


def media_message(stream_sid: str, ulaw: bytes) -> str:
    """Agent audio for Twilio to play: μ-law, 8 kHz, mono, base64 (no file headers)."""
    payload = base64.b64encode(ulaw).decode("ascii")
    return _dumps({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})


def mark_message(stream_sid: str, name: str) -> str:
    """Twilio echoes a mark with this name once the audio sent before it has played (or was cleared)."""
    return _dumps({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


def clear_message(stream_sid: str) -> str:
    """Twilio drops the audio it buffered and echoes the marks still pending."""
    return _dumps({"event": "clear", "streamSid": stream_sid})
