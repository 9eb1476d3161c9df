"""The wire format on its own: frames, client message validation, and what clients are told."""

from __future__ import annotations

import numpy as np
import pytest

from parley.audio.frame import AudioFrame
from parley.engine.events import Event, EventType
from parley.transports.ws_protocol import (
    HEADER_BYTES,
    ErrorCode,
    FrameError,
    ProtocolError,
    Resume,
    Start,
    decode_audio,
    encode_audio,
    encode_frame,
    messages_for,
    parse_client_message,
)


def test_audio_frames_round_trip_with_sequence_and_play_time() -> None:
    pcm = np.array([0, 1, -1, 32767, -32768], np.int16)
    data = encode_frame(41, AudioFrame(pcm, 16000, timestamp=12.5))
    assert len(data) == HEADER_BYTES + 2 * len(pcm)
    seq, play_ms, samples = decode_audio(data)
    assert (seq, play_ms) == (41, 12500.0)
    assert np.array_equal(samples, pcm)


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"\x01\x01", "fewer than"),
        (encode_audio(1, 0.0, b"\x00\x00")[:-1], "even number"),
        (b"\x02" + encode_audio(1, 0.0, b"")[1:], "unknown frame version"),
    ],
)
def test_malformed_frames_are_named(data: bytes, complaint: str) -> None:
    with pytest.raises(FrameError, match=complaint):
        decode_audio(data)


def test_start_defaults_and_resume_fields() -> None:
    start = parse_client_message('{"type": "start"}')
    assert isinstance(start, Start)
    assert (start.audio.sample_rate, start.audio.encoding, start.agent) == (16000, "pcm16", None)
    resume = parse_client_message('{"type": "resume", "session_id": "s", "token": "t", "last_audio_seq": 9}')
    assert isinstance(resume, Resume) and resume.last_audio_seq == 9 and resume.last_event_seq == -1


@pytest.mark.parametrize(
    ("text", "code", "says"),
    [
        ("{nope", ErrorCode.BAD_JSON, "not valid JSON"),
        ("[1, 2]", ErrorCode.INVALID_MESSAGE, "JSON object"),
        ('{"type": "dance"}', ErrorCode.UNKNOWN_MESSAGE, "'dance'"),
        ('{"text": "hi"}', ErrorCode.UNKNOWN_MESSAGE, "None"),
        ('{"type": "text", "text": ""}', ErrorCode.INVALID_MESSAGE, "text"),
        ('{"type": "start", "audio": {"encoding": "opus"}}', ErrorCode.INVALID_MESSAGE, "audio.encoding"),
        (
            '{"type": "start", "audio": {"sample_rate": "fast"}}',
            ErrorCode.INVALID_MESSAGE,
            "audio.sample_rate",
        ),
    ],
)
def test_bad_messages_get_a_code_and_a_reason(text: str, code: ErrorCode, says: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_message(text)
    assert caught.value.code is code
    assert says in caught.value.message


def test_engine_events_become_client_messages() -> None:
    started = Event(EventType.AGENT_AUDIO_STARTED, "s1", 1.0, {"reply_id": "r1", "at": 1.0, "v2v_ms": 321.5})
    assert messages_for(started) == [
        {"type": "agent.audio", "status": "started", "reply_id": "r1"},
        {"type": "metrics", "reply_id": "r1", "voice_to_voice_ms": 321.5},
    ]
    final = Event(EventType.TRANSCRIPT_FINAL, "s1", 1.0, {"text": "hello", "source": "speech"})
    assert messages_for(final) == [
        {"type": "transcript", "role": "user", "final": True, "text": "hello", "source": "speech"}
    ]
    assert messages_for(Event(EventType.LLM_REQUEST, "s1", 1.0, {"reply_id": "r1"})) == []
