"""The local Twilio reads the TwiML Parley writes, and refuses what Twilio would refuse."""

from __future__ import annotations

import pytest

from parley.telephony.twiml import hangup_twiml, reject_twiml, stream_twiml, transfer_twiml
from parley.twilio_sim.twiml import (
    Connect,
    Dial,
    DialTarget,
    Hangup,
    Pause,
    Redirect,
    Reject,
    Say,
    Stream,
    TwimlError,
    Unsupported,
    parse_twiml,
)


def test_parleys_stream_twiml() -> None:
    verbs = parse_twiml(stream_twiml("wss://voice.example.com/twilio/stream", {"call_id": "call_1"}))
    assert verbs == [
        Connect(Stream("wss://voice.example.com/twilio/stream", parameters={"call_id": "call_1"}))
    ]


def test_parleys_transfer_reject_and_hangup_twiml() -> None:
    assert parse_twiml(transfer_twiml("+14155550142")) == [Dial((DialTarget("number", "+14155550142"),))]
    (sip,) = parse_twiml(transfer_twiml("sip:desk@pbx.example.com"))
    assert isinstance(sip, Dial) and sip.targets == (DialTarget("sip", "sip:desk@pbx.example.com"),)
    assert parse_twiml(reject_twiml("busy")) == [Reject("busy")]
    assert parse_twiml(hangup_twiml())[-1] == Hangup()


def test_verbs_attributes_and_relative_urls() -> None:
    text = """<?xml version="1.0" encoding="UTF-8"?>
    <Response>
      <Say voice="alice" loop="2">Hello</Say>
      <Pause length="3"/>
      <Redirect method="GET">/next?step=2</Redirect>
      <Gather input="dtmf"/>
    </Response>"""
    verbs = parse_twiml(text, "https://app.example.com/twilio/voice")
    assert verbs == [
        Say("Hello", voice="alice", loop=2),
        Pause(3.0),
        Redirect("https://app.example.com/next?step=2", method="GET"),
        Unsupported("Gather"),
    ]


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("not xml", 12100),
        ("<Html/>", 12100),
        ("<Response><Dance/></Response>", 12200),
        ("<Response><Connect/></Response>", 12200),
        ('<Response><Connect><Stream url="wss://x"><Foo/></Stream></Connect></Response>', 12200),
        ('<Response><Reject reason="later"/></Response>', 12200),
        ("<Response><Dial/></Response>", 12200),
    ],
)
def test_invalid_documents(text: str, code: int) -> None:
    with pytest.raises(TwimlError) as error:
        parse_twiml(text)
    assert error.value.code == code
