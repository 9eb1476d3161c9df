"""The TwiML Parley answers with: what Twilio will do with each document."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from parley.telephony.twiml import hangup_twiml, reject_twiml, stream_twiml, stream_url, transfer_twiml


def test_a_call_is_connected_to_a_bidirectional_stream_with_its_id_as_a_parameter() -> None:
    root = ET.fromstring(stream_twiml("wss://voice.example.com/twilio/stream", {"call_id": "call_1"}))
    assert root.tag == "Response"
    [connect] = list(root)
    assert connect.tag == "Connect", "<Connect> (two-way audio, the call ends with the stream), not <Start>"
    [stream] = list(connect)
    assert stream.tag == "Stream" and stream.get("url") == "wss://voice.example.com/twilio/stream"
    assert [(p.tag, p.get("name"), p.get("value")) for p in stream] == [("Parameter", "call_id", "call_1")]


def test_stream_urls_never_carry_a_query_string() -> None:
    """Twilio drops a stream URL's query string: a value put there would never reach the stream."""
    with pytest.raises(ValueError, match="query string"):
        stream_twiml("wss://voice.example.com/twilio/stream?call_id=call_1", {})
    assert stream_url("https://voice.example.com/") == "wss://voice.example.com/twilio/stream"
    assert stream_url("http://127.0.0.1:8000") == "ws://127.0.0.1:8000/twilio/stream"


def test_transfers_dial_a_number_or_a_sip_address() -> None:
    number = ET.fromstring(transfer_twiml("+14155550100"))
    assert [(e.tag, e.text) for e in number.iter() if e.tag in ("Dial", "Number")] == [
        ("Dial", None),
        ("Number", "+14155550100"),
    ]
    sip = ET.fromstring(transfer_twiml("sip:desk@pbx.example.com"))
    assert [e.text for e in sip.iter("Sip")] == ["sip:desk@pbx.example.com"]
    with pytest.raises(ValueError):
        transfer_twiml("4155550100")


def test_refusing_a_call() -> None:
    reject = ET.fromstring(reject_twiml())
    assert [(e.tag, e.get("reason")) for e in reject] == [("Reject", "rejected")]
    assert ET.fromstring(reject_twiml("busy"))[0].get("reason") == "busy"
    hangup = ET.fromstring(hangup_twiml("Goodbye."))
    assert [(e.tag, e.text) for e in hangup] == [("Say", "Goodbye."), ("Hangup", None)]
