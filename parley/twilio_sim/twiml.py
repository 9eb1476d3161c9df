"""TwiML as the local Twilio reads it: a ``<Response>`` document turned into typed verbs, pure (no I/O).

Only what a call flow needs is modelled; verbs the simulator cannot act on (``<Gather>``, ``<Record>`` …)
come back as ``Unsupported`` so a run shows them instead of silently dropping them.

Verbs and attributes: https://www.twilio.com/docs/voice/twiml (and each verb's page under it:
``/say``, ``/play``, ``/pause``, ``/hangup``, ``/reject``, ``/redirect``, ``/dial``, ``/connect``,
``/stream``, ``/conference``). Parse failures are Twilio's error 12100 (https://www.twilio.com/docs/api/errors/12100),
schema violations 12200.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urljoin

MAX_TWIML_CHARS = 64_000
"""Twilio caps a TwiML document at 64 kB."""

DialKind = Literal["number", "sip", "client", "conference", "queue"]
_DIAL_NOUNS: dict[str, DialKind] = {
    "Number": "number",
    "Sip": "sip",
    "Client": "client",
    "Conference": "conference",
    "Queue": "queue",
}
_UNSUPPORTED = frozenset({"Gather", "Record", "Enqueue", "Leave", "Refer", "Sms", "Message", "Pay", "Prompt"})


class TwimlError(ValueError):
    """The document is not TwiML Twilio would run; ``code`` is Twilio's error number."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Say:
    text: str
    voice: str | None = None
    language: str | None = None
    loop: int = 1


@dataclass(frozen=True, slots=True)
class Play:
    url: str
    digits: str | None = None
    loop: int = 1


@dataclass(frozen=True, slots=True)
class Pause:
    length: float = 1.0


@dataclass(frozen=True, slots=True)
class Hangup:
    pass


@dataclass(frozen=True, slots=True)
class Reject:
    reason: Literal["rejected", "busy"] = "rejected"


@dataclass(frozen=True, slots=True)
class Redirect:
    url: str
    method: str = "POST"


CONFERENCE_EVENTS = frozenset(
    {"start", "end", "join", "leave", "mute", "hold", "modify", "speaker", "announcement"}
)
"""``<Conference statusCallbackEvent>`` values (https://www.twilio.com/docs/voice/twiml/conference)."""
BEEPS = frozenset({"true", "false", "onEnter", "onExit"})


@dataclass(frozen=True, slots=True)
class ConferenceNoun:
    """``<Dial><Conference>``'s attributes, with Twilio's defaults (https://www.twilio.com/docs/voice/twiml/
    conference): ``coach`` is the CallSid this participant whispers to."""

    muted: bool = False
    beep: str = "true"
    start_conference_on_enter: bool = True
    end_conference_on_exit: bool = False
    coach: str | None = None
    participant_label: str | None = None
    status_callback: str | None = None
    status_callback_method: str = "POST"
    status_callback_events: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DialTarget:
    kind: DialKind
    address: str
    conference: ConferenceNoun | None = None
    """The attributes of a ``<Conference>`` noun."""


@dataclass(frozen=True, slots=True)
class Dial:
    targets: tuple[DialTarget, ...]
    action: str | None = None
    method: str = "POST"
    caller_id: str | None = None
    timeout_s: int = 30


@dataclass(frozen=True, slots=True)
class Stream:
    url: str
    name: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    status_callback: str | None = None


@dataclass(frozen=True, slots=True)
class Connect:
    """``<Connect><Stream>``: a bidirectional Media Stream that holds the call until the socket closes."""

    stream: Stream
    action: str | None = None
    method: str = "POST"


@dataclass(frozen=True, slots=True)
class StartStream:
    """``<Start><Stream>``: a one-way fork; the call moves straight on to the next verb."""

    stream: Stream


@dataclass(frozen=True, slots=True)
class Unsupported:
    verb: str


Verb = Say | Play | Pause | Hangup | Reject | Redirect | Dial | Connect | StartStream | Unsupported


def parse_twiml(text: str, base_url: str | None = None) -> list[Verb]:
    """The verbs of a ``<Response>``, in order; relative URLs resolve against ``base_url`` (the URL the
    document came from), as Twilio resolves them."""
    if len(text) > MAX_TWIML_CHARS:
        raise TwimlError(12100, f"document is {len(text)} characters, over Twilio's 64 kB limit")
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise TwimlError(12100, f"document parse failure: {exc}") from exc
    if root.tag != "Response":
        raise TwimlError(12100, f"root element must be <Response>, got <{root.tag}>")
    return [_verb(element, base_url) for element in root]


def _verb(element: ET.Element, base: str | None) -> Verb:
    tag = element.tag
    if tag == "Say":
        return Say(
            text=(element.text or "").strip(),
            voice=element.get("voice"),
            language=element.get("language"),
            loop=_int(element, "loop", 1),
        )
    if tag == "Play":
        return Play(
            url=_url((element.text or "").strip(), base),
            digits=element.get("digits"),
            loop=_int(element, "loop", 1),
        )
    if tag == "Pause":
        return Pause(length=float(_int(element, "length", 1)))
    if tag == "Hangup":
        return Hangup()
    if tag == "Reject":
        reason = element.get("reason", "rejected")
        if reason not in ("rejected", "busy"):
            raise TwimlError(12200, f"<Reject reason> must be rejected or busy, got {reason!r}")
        return Reject(reason="busy" if reason == "busy" else "rejected")
    if tag == "Redirect":
        target = (element.text or "").strip()
        if not target:
            raise TwimlError(12200, "<Redirect> needs a URL")
        return Redirect(url=_url(target, base), method=_method(element))
    if tag == "Dial":
        return _dial(element, base)
    if tag == "Connect":
        streams = [child for child in element if child.tag == "Stream"]
        if len(streams) != 1 or len(element) != 1:
            nouns = ", ".join(f"<{child.tag}>" for child in element) or "nothing"
            raise TwimlError(12200, f"<Connect> must hold exactly one <Stream> here, got {nouns}")
        action = element.get("action")
        return Connect(
            stream=_stream(streams[0], base),
            action=_url(action, base) if action else None,
            method=_method(element),
        )
    if tag == "Start":
        streams = [child for child in element if child.tag == "Stream"]
        if len(streams) != 1:
            return Unsupported("Start")
        return StartStream(stream=_stream(streams[0], base))
    if tag in _UNSUPPORTED:
        return Unsupported(tag)
    raise TwimlError(12200, f"<{tag}> is not a TwiML voice verb")


def _dial(element: ET.Element, base: str | None) -> Dial:
    targets: list[DialTarget] = []
    bare = (element.text or "").strip()
    if bare:
        targets.append(DialTarget("number", bare))
    for child in element:
        kind = _DIAL_NOUNS.get(child.tag)
        if kind is None:
            raise TwimlError(12200, f"<{child.tag}> cannot be dialed")
        address = (child.text or "").strip()
        if not address:
            raise TwimlError(12200, f"<Dial><{child.tag}> is empty")
        noun = _conference(child, base) if kind == "conference" else None
        targets.append(DialTarget(kind, address, noun))
    if not targets:
        raise TwimlError(12200, "<Dial> has nothing to dial")
    action = element.get("action")
    return Dial(
        targets=tuple(targets),
        action=_url(action, base) if action else None,
        method=_method(element),
        caller_id=element.get("callerId"),
        timeout_s=_int(element, "timeout", 30),
    )


def _conference(element: ET.Element, base: str | None) -> ConferenceNoun:
    beep = element.get("beep", "true")
    if beep not in BEEPS:
        raise TwimlError(12200, f"<Conference beep> must be true, false, onEnter or onExit, got {beep!r}")
    events = frozenset((element.get("statusCallbackEvent") or "").split())
    if unknown := events - CONFERENCE_EVENTS:
        raise TwimlError(12200, f"<Conference statusCallbackEvent> has unknown events {sorted(unknown)}")
    callback = element.get("statusCallback")
    method = element.get("statusCallbackMethod", "POST").upper()
    if method not in ("GET", "POST"):
        raise TwimlError(12200, f"statusCallbackMethod must be GET or POST, got {method!r}")
    return ConferenceNoun(
        muted=_bool(element, "muted", False),
        beep=beep,
        start_conference_on_enter=_bool(element, "startConferenceOnEnter", True),
        end_conference_on_exit=_bool(element, "endConferenceOnExit", False),
        coach=element.get("coach") or None,
        participant_label=element.get("participantLabel") or None,
        status_callback=_url(callback, base) if callback else None,
        status_callback_method=method,
        status_callback_events=events,
    )


def _bool(element: ET.Element, name: str, default: bool) -> bool:
    raw = element.get(name)
    if raw is None:
        return default
    if raw.lower() not in ("true", "false"):
        raise TwimlError(12200, f"<{element.tag} {name}> must be true or false, got {raw!r}")
    return raw.lower() == "true"


def _stream(element: ET.Element, base: str | None) -> Stream:
    url = element.get("url")
    if not url:
        raise TwimlError(12200, "<Stream> needs a url attribute")
    parameters: dict[str, str] = {}
    for child in element:
        if child.tag != "Parameter":
            raise TwimlError(12200, f"<Stream> may only hold <Parameter>, got <{child.tag}>")
        name = child.get("name")
        if not name:
            raise TwimlError(12200, "<Parameter> needs a name")
        parameters[name] = child.get("value", "")
    callback = element.get("statusCallback")
    return Stream(
        url=url,
        name=element.get("name"),
        parameters=parameters,
        status_callback=_url(callback, base) if callback else None,
    )


def _url(value: str, base: str | None) -> str:
    return urljoin(base, value) if base else value


def _method(element: ET.Element) -> str:
    method = element.get("method", "POST").upper()
    if method not in ("GET", "POST"):
        raise TwimlError(12200, f"method must be GET or POST, got {method!r}")
    return method


def _int(element: ET.Element, name: str, default: int) -> int:
    raw = element.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise TwimlError(12200, f"<{element.tag} {name}> must be a whole number, got {raw!r}") from exc
