"""The TwiML Parley answers Twilio's webhooks with, built with the official library's ``VoiceResponse``.

Shapes: https://www.twilio.com/docs/voice/twiml/stream (``<Connect><Stream>`` and its ``<Parameter>``s),
https://www.twilio.com/docs/voice/twiml/dial (``<Number>``, ``<Sip>``), https://www.twilio.com/docs/voice/twiml/reject,
https://www.twilio.com/docs/voice/twiml/hangup (twilio-python: ``twilio/twiml/voice_response.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse  # type: ignore[import-untyped]

STREAM_PATH = "/twilio/stream"


def stream_url(base_url: str, path: str = STREAM_PATH) -> str:
    """The WebSocket URL of a Parley media stream under ``base_url`` (``https://x`` → ``wss://x/...``)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base.removeprefix("https://")
    elif base.startswith("http://"):
        base = "ws://" + base.removeprefix("http://")
    return base + path


def stream_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """Connect the call to a bidirectional media stream.

    ``<Connect>``, not ``<Start>``: only a connected stream can send audio back, and closing it ends the
    call. Twilio drops a stream URL's query string, so values travel as ``<Parameter>``s and arrive in the
    ``start`` message's ``customParameters``."""
    if "?" in stream_url or "#" in stream_url:
        raise ValueError("Twilio drops a stream URL's query string: pass values as parameters")
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response.to_xml())


def transfer_twiml(target: str) -> str:
    """Send the call on: ``<Dial><Number>`` for an E.164 number, ``<Dial><Sip>`` for a ``sip:`` URI."""
    response = VoiceResponse()
    dial = Dial()
    if target.startswith(("sip:", "sips:")):
        dial.sip(target)
    elif target.startswith("+"):
        dial.number(target)
    else:
        raise ValueError(f"not a phone number or SIP URI: {target!r}")
    response.append(dial)
    return str(response.to_xml())


def reject_twiml(reason: Literal["rejected", "busy"] = "rejected") -> str:
    """Refuse an inbound call before it is answered (the caller is not charged; Twilio plays the carrier's
    own tone), e.g. for a number no agent answers."""
    response = VoiceResponse()
    response.reject(reason=reason)
    return str(response.to_xml())


def hangup_twiml(message: str | None = None) -> str:
    """End a call that is already answered, optionally saying why first."""
    response = VoiceResponse()
    if message:
        response.say(message)
    response.hangup()
    return str(response.to_xml())
