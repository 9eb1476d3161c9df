"""One phone leg on its own: Twilio's messages in, what the session hears, what Twilio is sent back."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from parley.audio.codecs import ulaw_decode
from parley.audio.frame import PCM16, AudioFrame
from parley.engine.keypad import KEYPAD_DIGITS
from parley.transports import twilio_media
from parley.transports.twilio_media import HUNG_UP, TwilioMediaLeg
from parley.transports.twilio_protocol import FRAME_BYTES

STREAM = "MZ" + "0" * 32


class FakeSession:
    """Records what the leg hands the session."""

    def __init__(self) -> None:
        self.id = "sess_test"
        self.fed: list[PCM16] = []
        self.said_at: list[float | None] = []
        self.keys: list[str] = []
        self.ended: list[str] = []

    def feed(self, samples: PCM16, arrival: float | None = None) -> None:
        self.fed.append(samples.copy())
        self.said_at.append(arrival)

    def press_key(self, digit: str) -> None:
        if digit not in KEYPAD_DIGITS:
            raise ValueError(f"not a keypad digit: {digit!r}")
        self.keys.append(digit)

    def end(self, reason: str) -> None:
        self.ended.append(reason)


class Wire:
    """The socket as the leg sees it: what it sent, and whether (how) it closed it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None

    def send(self, text: str) -> None:
        self.sent.append(json.loads(text))

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def events(self) -> list[str]:
        return [m["event"] for m in self.sent]

    def marks(self) -> list[str]:
        return [m["mark"]["name"] for m in self.sent if m["event"] == "mark"]


class Clock:
    t = 1000.0


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    """The leg's view of the monotonic clock, moved by hand."""
    c = Clock()
    monkeypatch.setattr(twilio_media, "now", lambda: c.t)
    yield c


def make_leg(**options: Any) -> tuple[TwilioMediaLeg, FakeSession, Wire]:
    session, wire = FakeSession(), Wire()
    leg = TwilioMediaLeg(session, STREAM, wire.send, wire.close, call_id="call_test", **options)
    return leg, session, wire


def media(chunk: int, code: int, track: str = "inbound") -> str:
    """A media message as Twilio sends it, its frame filled with one μ-law code."""
    payload = base64.b64encode(bytes([code]) * FRAME_BYTES).decode()
    body = {"track": track, "chunk": str(chunk), "timestamp": str(20 * chunk), "payload": payload}
    return json.dumps(
        {"event": "media", "sequenceNumber": str(chunk + 1), "streamSid": STREAM, "media": body}
    )


def echo(name: str) -> str:
    return json.dumps({"event": "mark", "sequenceNumber": "9", "streamSid": STREAM, "mark": {"name": name}})


def tone_frames(count: int, start: float) -> list[AudioFrame]:
    """Agent audio at 8 kHz: ``count`` 20 ms frames playing from ``start`` on."""
    pcm = np.full(160, 1000, np.int16)
    return [AudioFrame(pcm, 8000, start + 0.02 * k) for k in range(count)]


async def until(condition: Callable[[], bool], within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110  (the leg has no event for what a test waits on)
            await asyncio.sleep(0.005)


# --- inbound ---------------------------------------------------------------------------------------------


async def test_reordered_duplicated_and_lost_frames_reach_the_session_in_order() -> None:
    leg, session, _ = make_leg(jitter_ms=60)
    codes = {chunk: 0x81 + chunk for chunk in range(1, 11)}  # a distinct level per frame
    arrivals = [1, 3, 2, 4, 4, 5, 7, 8, 9, 10]  # 2 and 3 swapped, 4 twice, 6 lost
    for chunk in arrivals:
        leg.on_text(media(chunk, codes[chunk]))
    level = {int(ulaw_decode(bytes([code]))[0]): chunk for chunk, code in codes.items()}

    def heard() -> list[int | None]:
        """Frame by frame, which chunk the session got (None: made up), from the first real one on."""
        got = [level.get(int(f[0])) if np.all(f == f[0]) else None for f in session.fed]
        first = next((i for i, chunk in enumerate(got) if chunk is not None), len(got))
        return got[first:]

    await until(lambda: len(heard()) >= 10)
    await leg.aclose()
    assert heard()[:5] == [1, 2, 3, 4, 5]
    assert heard()[5] is None  # 6 was lost: made up from 5, fading
    assert heard()[6:10] == [7, 8, 9, 10]
    stats = leg.stats
    # the second 4 came after 4 had gone on: dropped as late (a duplicate of a frame still held: duplicate)
    assert (stats.jitter_duplicates + stats.jitter_late, stats.jitter_lost) == (1, 1)
    assert all(len(frame) == 160 for frame in session.fed)


async def test_the_callers_audio_is_fed_at_8_khz_frame_by_frame() -> None:
    leg, session, _ = make_leg(jitter_ms=20)
    leg.on_text(media(1, 0x90))
    await until(lambda: len(session.fed) >= 1)
    await leg.aclose()
    assert np.array_equal(session.fed[0], ulaw_decode(bytes([0x90]) * FRAME_BYTES))


async def test_audio_of_other_tracks_is_not_the_caller() -> None:
    leg, session, _ = make_leg()
    leg.on_text(media(1, 0x90, track="outbound"))
    await asyncio.sleep(0.05)
    await leg.aclose()
    assert session.fed == [] and leg.stats.frames_in == 0


async def test_bad_messages_are_logged_and_skipped() -> None:
    leg, session, _ = make_leg(jitter_ms=20)
    bad_payload = json.loads(media(1, 0x90))
    bad_payload["media"]["payload"] = base64.b64encode(b"\x00" * 100).decode()
    with capture_logs() as logs:
        leg.on_text("{nope")
        leg.on_text('{"event": "dance"}')
        leg.on_text(json.dumps(bad_payload))
        leg.on_text(b"\x00\x01")
        leg.on_text(media(2, 0x90))  # the stream goes on
    await until(lambda: len(session.fed) >= 1)
    await leg.aclose()
    assert leg.stats.bad_messages == 4
    kinds = [entry["kind"] for entry in logs if entry["event"] == "twilio.bad_message"]
    assert kinds == ["bad_json", "unknown_event", "bad_payload", "bad_json"]
    assert all(entry["call_id"] == "call_test" for entry in logs if entry["event"] == "twilio.bad_message")
    assert session.ended == []


async def test_keypad_digits_go_to_the_session_and_bad_ones_are_skipped() -> None:
    leg, session, _ = make_leg()
    for digit in ("1", "x", "#"):
        leg.on_text(json.dumps({"event": "dtmf", "dtmf": {"track": "inbound_track", "digit": digit}}))
    assert session.keys == ["1", "#"]
    assert leg.stats.bad_messages == 1


async def test_stop_hangs_up_once_and_nothing_more_is_sent() -> None:
    leg, session, wire = make_leg()
    leg.on_text(json.dumps({"event": "stop", "stop": {"callSid": "CA1"}}))
    leg.on_text(json.dumps({"event": "stop", "stop": {"callSid": "CA1"}}))
    assert session.ended == [HUNG_UP]
    await leg.send_audio(0, tone_frames(1, 0.0)[0])
    leg.send_clear()
    assert wire.sent == []
    leg.close(1000, HUNG_UP)
    assert wire.closed == (1000, HUNG_UP)


# --- outbound: media, marks, clear ----------------------------------------------------------------------


async def test_audio_leaves_as_ulaw_media_with_a_mark_every_100_ms(clock: Clock) -> None:
    leg, _, wire = make_leg()
    for k, frame in enumerate(tone_frames(12, clock.t)):
        await leg.send_audio(k, frame)
    assert wire.events() == ["media"] * 5 + ["mark"] + ["media"] * 5 + ["mark"] + ["media"] * 2
    payload = base64.b64decode(wire.sent[0]["media"]["payload"])
    assert len(payload) == 160 and wire.sent[0]["streamSid"] == STREAM
    assert np.allclose(ulaw_decode(payload), 1000, atol=40)
    # The audio stops: once its last frame has played, its end is marked too.
    clock.t += 1.0
    await until(lambda: len(wire.marks()) == 3)
    assert len(set(wire.marks())) == 3
    await leg.aclose()


async def test_echoed_marks_say_how_late_the_caller_hears(clock: Clock) -> None:
    leg, _, wire = make_leg()
    t0 = clock.t
    for k, frame in enumerate(tone_frames(10, t0)):  # marks after 100 ms (p1) and 200 ms (p2)
        leg.queue_audio(k, frame)
    first, second = wire.marks()
    clock.t = t0 + 0.1 + 0.3  # the first 100 ms were heard 300 ms after their play time
    leg.on_text(echo(first))
    assert leg.heard_until(clock.t + 0.05) == pytest.approx(t0 + 0.15)
    # never past a mark not yet heard, nor past the audio sent
    assert leg.heard_until(clock.t + 5.0) == pytest.approx(t0 + 0.2)
    # the network slows down: what was acknowledged stays heard
    clock.t = t0 + 0.2 + 1.0
    leg.on_text(echo(second))
    assert leg.heard_until(t0 + 0.41) == pytest.approx(t0 + 0.1)
    assert leg.heard_until(clock.t) == pytest.approx(t0 + 0.2)
    assert leg.stats.marks_heard == 2
    await leg.aclose()


async def test_without_any_echo_the_engine_clock_stands(clock: Clock) -> None:
    leg, _, _ = make_leg()
    assert leg.heard_until(clock.t) == clock.t  # nothing sent yet
    for k, frame in enumerate(tone_frames(3, clock.t)):
        leg.queue_audio(k, frame)
    assert leg.heard_until(clock.t + 0.03) == pytest.approx(clock.t + 0.03)
    await leg.aclose()


async def test_marks_echoed_after_a_clear_name_audio_never_heard(clock: Clock) -> None:
    leg, _, wire = make_leg()
    t0 = clock.t
    for k, frame in enumerate(tone_frames(15, t0)):
        leg.queue_audio(k, frame)
    p1, p2, p3 = wire.marks()
    clock.t = t0 + 0.1 + 0.2
    leg.on_text(echo(p1))
    clock.t = t0 + 0.35  # barge-in: the agent is cut here and Twilio told to drop its buffer
    cut = clock.t
    leg.send_clear()
    assert wire.sent[-1] == {"event": "clear", "streamSid": STREAM}
    clock.t += 0.05
    leg.on_text(echo(p2))  # Twilio echoes what it dropped
    leg.on_text(echo(p3))
    assert (leg.stats.marks_heard, leg.stats.marks_cleared, leg.stats.clears) == (1, 2, 1)
    assert leg.heard_until(cut) == pytest.approx(t0 + 0.15)  # cut − 200 ms, short of p2's audio end
    assert leg.heard_until(clock.t + 10.0) == pytest.approx(t0 + 0.15)  # the rest is never heard
    await leg.aclose()


async def test_agent_audio_must_be_8_khz() -> None:
    leg, _, _ = make_leg()
    with pytest.raises(ValueError, match="8000"):
        await leg.send_audio(0, AudioFrame(np.zeros(320, np.int16), 16000, 0.0))


# --- the end of a call ----------------------------------------------------------------------------------


async def test_an_agent_side_end_waits_for_the_last_words_to_be_heard(clock: Clock) -> None:
    leg, session, wire = make_leg()
    for k, frame in enumerate(tone_frames(7, clock.t)):
        leg.queue_audio(k, frame)
    leg.close(1000, "agent_ended_call")
    first, last = wire.marks()  # the final 40 ms were marked on close
    await asyncio.sleep(0.02)
    assert wire.closed is None
    leg.on_text(echo(first))
    leg.on_text(echo(last))
    await until(lambda: wire.closed is not None)
    assert wire.closed == (1000, "agent_ended_call")
    assert session.ended == []  # the session ended on its own; the leg only hung up the line
    await leg.aclose()


async def test_the_last_words_are_waited_for_a_bounded_time(clock: Clock) -> None:
    leg, _, wire = make_leg(drain_timeout_s=0.05)
    for k, frame in enumerate(tone_frames(5, clock.t)):
        leg.queue_audio(k, frame)
    with capture_logs() as logs:
        leg.close(1000, "voicemail_left")
        await until(lambda: wire.closed is not None)
    assert any(entry["event"] == "twilio.drain_timeout" for entry in logs)
    await leg.aclose()


async def test_a_transfer_waits_until_the_caller_heard_the_agent_out(clock: Clock) -> None:
    """Twilio drops what it has not played when the call leaves the stream: the leg waits for the echo."""
    leg, session, wire = make_leg()
    for k, frame in enumerate(tone_frames(3, clock.t)):
        leg.queue_audio(k, frame)
    waiting = asyncio.create_task(leg.wait_heard("transfer"))
    await asyncio.sleep(0.02)
    (mark,) = wire.marks()  # the 60 ms sent so far, marked at once
    assert not waiting.done()
    leg.on_text(echo(mark))
    await asyncio.wait_for(waiting, 1)
    assert wire.closed is None and session.ended == []  # the line stays up until Twilio moves the call
    await leg.aclose()


async def test_a_clear_before_the_end_leaves_nothing_to_wait_for(clock: Clock) -> None:
    leg, _, wire = make_leg()
    for k, frame in enumerate(tone_frames(5, clock.t)):
        leg.queue_audio(k, frame)
    leg.send_clear()
    leg.close(1000, "max_duration")
    await until(lambda: wire.closed is not None)
    await leg.aclose()


async def test_frames_that_arrive_in_a_burst_are_stamped_when_they_were_said() -> None:
    """Media queued while the session opened arrives at once; each frame still ends chunk × 20 ms after
    ``start``, so the conversation's clock (turn ends, latency, the recording) is not shifted."""
    started = time.monotonic() - 0.5  # ``start`` came half a second ago; 25 chunks waited meanwhile
    leg, session, _ = make_leg(started_at=started)
    for chunk in range(1, 26):
        leg.on_text(media(chunk, 0x81))
    await leg.aclose()
    assert len(session.said_at) == 25
    for chunk, said in enumerate(session.said_at, 1):
        assert said == pytest.approx(started + chunk * 0.02)
