"""Twilio Media Streams' wire format on its own: what Twilio sends, typed; what Parley sends back."""

from __future__ import annotations

import base64
import json

import pytest

from parley.transports.twilio_protocol import (
    FRAME_BYTES,
    MAX_MESSAGE_CHARS,
    Connected,
    Dtmf,
    Mark,
    Media,
    Start,
    Stop,
    TwilioProtocolError,
    clear_message,
    mark_message,
    media_message,
    parse_message,
)

STREAM = "MZ" + "1" * 32
CALL = "CA" + "2" * 32
ACCOUNT = "AC" + "3" * 32


def media_json(chunk: int = 1, payload: bytes | str = b"\xff" * FRAME_BYTES, **media: object) -> str:
    body = {
        "track": "inbound",
        "chunk": str(chunk),
        "timestamp": str(20 * chunk),
        "payload": payload if isinstance(payload, str) else base64.b64encode(payload).decode(),
        **media,
    }
    return json.dumps(
        {"event": "media", "sequenceNumber": str(chunk + 1), "streamSid": STREAM, "media": body}
    )


def test_start_as_twilio_sends_it() -> None:
    text = json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": ACCOUNT,
                "streamSid": STREAM,
                "callSid": CALL,
                "tracks": ["inbound"],
                "customParameters": {"call_id": "call_abc"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": STREAM,
        }
    )
    start = parse_message(text)
    assert isinstance(start, Start)
    assert (start.call_sid, start.stream_sid, start.account_sid) == (CALL, STREAM, ACCOUNT)
    assert start.custom_parameters == {"call_id": "call_abc"}
    assert start.tracks == ("inbound",)
    fmt = start.media_format
    assert (fmt.encoding, fmt.sample_rate, fmt.channels) == ("audio/x-mulaw", 8000, 1)
    assert start.sequence_number == 1


def test_media_numbers_arrive_as_strings_and_come_out_as_ints() -> None:
    frame = bytes(range(FRAME_BYTES))
    media = parse_message(media_json(7, frame))
    assert media == Media(track="inbound", sequence_number=8, chunk=7, timestamp_ms=140, payload=frame)


def test_connected_mark_dtmf_stop() -> None:
    assert parse_message('{"event": "connected", "protocol": "Call", "version": "1.0.0"}') == Connected(
        "Call", "1.0.0"
    )
    mark = {"event": "mark", "sequenceNumber": "4", "streamSid": STREAM, "mark": {"name": "p12"}}
    assert parse_message(json.dumps(mark)) == Mark("p12")
    dtmf = {
        "event": "dtmf",
        "streamSid": STREAM,
        "sequenceNumber": "5",
        "dtmf": {"track": "inbound_track", "digit": "#"},
    }
    assert parse_message(json.dumps(dtmf)) == Dtmf("#", "inbound_track")
    stop = {
        "event": "stop",
        "sequenceNumber": "6",
        "streamSid": STREAM,
        "stop": {"accountSid": ACCOUNT, "callSid": CALL},
    }
    assert parse_message(json.dumps(stop)) == Stop(CALL)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("{nope", "bad_json"),
        (b"\xff\xfe{", "bad_json"),
        ("[1, 2]", "bad_json"),
        ('{"event": "dance"}', "unknown_event"),
        ('{"no": "event"}', "unknown_event"),
        ('{"event": "media", "media": ' + "[" * 20 + "]" * 20 + "}", "too_deep"),
        ('{"event": "media"' + "[" * 100_000 + "}", "too_large"),
        ("[" * 50_000 + "]" * 50_000, "too_large"),
        ('{"event": "mark", "mark": {}}', "invalid"),
        ('{"event": "dtmf", "dtmf": {"digit": "12"}}', "invalid"),
        ('{"event": "start", "start": {"callSid": "CA1"}}', "invalid"),
        (media_json(chunk=-1), "invalid"),
        (media_json(timestamp="soon"), "invalid"),
        (media_json(payload=b"\x00" * 159), "bad_payload"),
        (media_json(payload=b""), "bad_payload"),
        (media_json(payload="not*base64!"), "bad_payload"),
    ],
)
def test_unusable_messages_are_named(text: str | bytes, kind: str) -> None:
    with pytest.raises(TwilioProtocolError) as caught:
        parse_message(text)
    assert caught.value.kind == kind


def test_a_message_just_under_the_size_limit_still_parses() -> None:
    padding = "x" * (MAX_MESSAGE_CHARS - 200)
    mark = json.dumps({"event": "mark", "mark": {"name": "m"}, "padding": padding})
    assert len(mark) <= MAX_MESSAGE_CHARS
    assert parse_message(mark) == Mark("m")


def test_outbound_messages_are_what_twilio_expects() -> None:
    ulaw = bytes(range(200))
    media = json.loads(media_message(STREAM, ulaw))
    assert media == {
        "event": "media",
        "streamSid": STREAM,
        "media": {"payload": base64.b64encode(ulaw).decode()},
    }
    assert json.loads(mark_message(STREAM, "p3")) == {
        "event": "mark",
        "streamSid": STREAM,
        "mark": {"name": "p3"},
    }
    assert json.loads(clear_message(STREAM)) == {"event": "clear", "streamSid": STREAM}
