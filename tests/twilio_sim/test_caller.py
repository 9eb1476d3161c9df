"""The simulated caller against a tiny stream server playing Parley's side.

What matters is what a server written against Twilio's documentation would see and what the caller
would hear: Twilio's message shapes, a signature twilio-python accepts, real-time media, and a playout
buffer that echoes marks only once their audio has played and honours ``clear``.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped, unused-ignore]
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers

from parley.audio.codecs import ulaw_decode, ulaw_encode
from parley.audio.frame import PCM16
from parley.engine.events import now
from parley.simulation import voiced_span
from parley.twilio_sim.caller import CallEnded, SimulatedCaller
from parley.twilio_sim.network import ImpairedLink, NetworkProfile

TOKEN = "test-auth-token"
FRAME_BYTES = 160


def tone(seconds: float, rate: int = 8000, freq: float = 440.0) -> PCM16:
    t = np.arange(round(seconds * rate)) / rate
    pcm: PCM16 = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
    return pcm


class StreamServer:
    """Parley's role, reduced to a recorder: keeps what arrives and when, sends what a test says."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], float]] = []
        self.headers = Headers()
        self.ws: ServerConnection | None = None
        self.gone = asyncio.Event()
        self._new = asyncio.Event()

    async def handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.ws = ws
        self.headers = ws.request.headers
        try:
            async for data in ws:
                self.received.append((json.loads(data), now()))
                self._new.set()
        finally:
            self.gone.set()
            self._new.set()

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [m for m, _ in self.received]

    async def wait_for(self, match: Callable[[dict[str, Any]], bool], limit_s: float = 5.0) -> float:
        """Arrival time of the first message that matches (waiting for it if needed)."""
        async with asyncio.timeout(limit_s):
            while True:
                self._new.clear()
                for message, at in self.received:
                    if match(message):
                        return at
                if self.gone.is_set():
                    raise AssertionError("the caller went away first")
                await self._new.wait()

    async def wait_for_mark(self, name: str) -> float:
        return await self.wait_for(lambda m: m["event"] == "mark" and m["mark"]["name"] == name)

    async def send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(message))

    async def play(self, stream_sid: str, pcm: PCM16) -> float:
        """Send audio as Parley would (20 ms μ-law media messages, all at once); returns when sent."""
        ulaw = ulaw_encode(pcm)
        sent = now()
        for i in range(0, len(ulaw), FRAME_BYTES):
            payload = base64.b64encode(ulaw[i : i + FRAME_BYTES]).decode()
            await self.send({"event": "media", "streamSid": stream_sid, "media": {"payload": payload}})
        return sent

    async def mark(self, stream_sid: str, name: str) -> None:
        await self.send({"event": "mark", "streamSid": stream_sid, "mark": {"name": name}})


@pytest.fixture
async def server() -> AsyncIterator[tuple[StreamServer, str]]:
    side = StreamServer()
    async with serve(side.handle, "127.0.0.1", 0, compression=None) as ws_server:
        port = next(iter(ws_server.sockets)).getsockname()[1]
        yield side, f"ws://127.0.0.1:{port}/twilio/stream"


def media(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["event"] == "media"]


async def test_the_stream_opens_signed_and_speaks_twilio(server: tuple[StreamServer, str]) -> None:
    side, url = server
    caller = SimulatedCaller(url, auth_token=TOKEN, custom_parameters={"call_id": "call_123"})
    async with caller:
        await caller.say(np.zeros(320, np.int16), 8000)  # the line is open before anyone speaks
        captured = await caller.say(tone(0.1, rate=16000), 16000)
        await caller.press("5")
        await side.wait_for(lambda m: m["event"] == "dtmf")
    await asyncio.wait_for(side.gone.wait(), 5)

    signature = side.headers["X-Twilio-Signature"]
    assert RequestValidator(TOKEN).validate(url, {}, signature)
    assert not RequestValidator("another-token").validate(url, {}, signature)

    messages = side.messages
    assert messages[0] == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert messages[1] == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "accountSid": caller.account_sid,
            "streamSid": caller.stream_sid,
            "callSid": caller.call_sid,
            "tracks": ["inbound"],
            "customParameters": {"call_id": "call_123"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": caller.stream_sid,
    }
    assert caller.call_sid.startswith("CA") and caller.stream_sid.startswith("MZ")
    assert caller.account_sid.startswith("AC") and len(caller.account_sid) == 34

    # Every message after `connected` is numbered, as a string, and the numbers go up one by one.
    seqs = [m["sequenceNumber"] for m in messages[1:]]
    assert all(isinstance(s, str) for s in seqs)
    assert [int(s) for s in seqs] == list(range(1, len(seqs) + 1))

    frames = media(messages)
    assert len(frames) >= 7
    for n, frame in enumerate(frames, start=1):
        assert frame["streamSid"] == caller.stream_sid
        assert set(frame["media"]) == {"track", "chunk", "timestamp", "payload"}
        assert frame["media"]["track"] == "inbound"
        assert frame["media"]["chunk"] == str(n)
        assert frame["media"]["timestamp"] == str((n - 1) * 20)
        assert len(base64.b64decode(frame["media"]["payload"])) == FRAME_BYTES

    # Real time: chunk n is sent only once its 20 ms of audio have been captured.
    assert caller.started_at is not None
    arrivals = [at for m, at in side.received if m["event"] == "media"]
    assert all(at >= caller.started_at + n * 0.02 for n, at in enumerate(arrivals, start=1))

    # The line carried the clip (resampled to 8 kHz) and silence around it.
    audio = np.concatenate([ulaw_decode(base64.b64decode(f["media"]["payload"])) for f in frames])
    first, last = voiced_span(audio, 8000, caller.started_at)
    assert first == pytest.approx(captured, abs=1e-6)
    assert last - first == pytest.approx(0.1, abs=0.011)
    assert not np.any(audio[:320])

    dtmf = next(m for m in messages if m["event"] == "dtmf")
    assert dtmf == {
        "event": "dtmf",
        "streamSid": caller.stream_sid,
        "sequenceNumber": dtmf["sequenceNumber"],
        "dtmf": {"track": "inbound_track", "digit": "5"},
    }
    assert messages[-1] == {
        "event": "stop",
        "sequenceNumber": seqs[-1],
        "stop": {"accountSid": caller.account_sid, "callSid": caller.call_sid},
        "streamSid": caller.stream_sid,
    }
    assert caller.ended_by == "caller"
    with pytest.raises(CallEnded):
        await caller.press("1")


async def test_marks_echo_only_once_their_audio_has_played(server: tuple[StreamServer, str]) -> None:
    side, url = server
    async with SimulatedCaller(url, auth_token=TOKEN) as caller:
        await side.wait_for(lambda m: m["event"] == "start")
        sent = await side.play(caller.stream_sid, tone(0.3))
        await side.mark(caller.stream_sid, "first")
        await side.play(caller.stream_sid, tone(0.1, freq=880))
        await side.mark(caller.stream_sid, "second")

        first = await side.wait_for_mark("first")
        second = await side.wait_for_mark("second")
        assert first - sent >= 0.3
        assert second - sent >= 0.4

        echo = next(m for m in side.messages if m["event"] == "mark")
        assert echo == {
            "event": "mark",
            "sequenceNumber": echo["sequenceNumber"],
            "streamSid": caller.stream_sid,
            "mark": {"name": "first"},
        }
        assert int(echo["sequenceNumber"]) > 1

        assert [(e.name, e.cleared) for e in caller.mark_echoes] == [("first", False), ("second", False)]
        assert (caller.marks_echoed, caller.marks_cleared, caller.media_received) == (2, 0, 20)
        heard = caller.heard
        assert sum(len(c.pcm) for c in heard) == 0.4 * 8000
        assert heard[0].start >= sent
        # Each mark went back when the caller's own playout reached it, not when it arrived.
        end_of_first = heard[14].start + 0.02
        end = heard[-1].start + 0.02
        assert caller.mark_echoes[0].at >= end_of_first
        assert caller.mark_echoes[1].at >= end
        assert caller.silent_at(end - 0.01) == pytest.approx(end)
        assert caller.heard_voice(heard[0].start - 0.1) == pytest.approx((heard[0].start, end))

        assert side.ws is not None
        await side.ws.close()  # the agent hung up: with <Connect><Stream>, that ends the call
        await caller.wait_closed(5)
        assert caller.ended_by == "server"
        with pytest.raises(CallEnded):
            await caller.say(tone(0.1), 8000)


async def test_clear_drops_unplayed_audio_and_echoes_pending_marks_at_once(
    server: tuple[StreamServer, str],
) -> None:
    side, url = server
    async with SimulatedCaller(url, auth_token=TOKEN) as caller:
        await side.wait_for(lambda m: m["event"] == "start")
        await side.play(caller.stream_sid, tone(0.1))
        await side.mark(caller.stream_sid, "short")
        long_sent = await side.play(caller.stream_sid, tone(3.0))
        await side.mark(caller.stream_sid, "long")
        await side.wait_for_mark("short")

        await side.send({"event": "clear", "streamSid": caller.stream_sid})
        await side.wait_for_mark("long")
        assert caller.clears_received == 1
        cut = caller.clears[0]
        assert [(e.name, e.cleared) for e in caller.mark_echoes] == [("short", False), ("long", True)]
        assert (caller.marks_echoed, caller.marks_cleared) == (1, 1)

        # What was heard stops exactly at the clear; the rest of the 3 s never reached the ear.
        last = caller.heard[-1]
        assert last.start + len(last.pcm) / 8000 == pytest.approx(cut, abs=1 / 8000)
        assert caller.silent_at(cut - 0.01) == pytest.approx(cut, abs=1 / 8000)
        assert sum(len(c.pcm) for c in caller.heard) < 3.1 * 8000
        assert not np.any(caller.heard_audio(cut, cut + 3.0))

        # The buffer is empty again: new audio plays on arrival, not after the dropped 3 s.
        after_sent = await side.play(caller.stream_sid, tone(0.1))
        await side.mark(caller.stream_sid, "after")
        after = await side.wait_for_mark("after")
        assert after - after_sent >= 0.1
        assert after < long_sent + 3.0
        assert caller.marks_echoed == 2


async def test_a_seeded_bad_network_loses_duplicates_and_reorders_what_it_says(
    server: tuple[StreamServer, str],
) -> None:
    side, url = server
    profile = NetworkProfile(loss=0.1, duplicate=0.1, reorder=0.1, jitter_ms=30, seed=7)
    async with SimulatedCaller(url, auth_token=TOKEN, network=profile) as caller:
        await caller.say(tone(0.8), 8000)
    await asyncio.wait_for(side.gone.wait(), 5)

    stats = caller.network_stats
    expected: ImpairedLink[int] = ImpairedLink(profile)  # the same seed replayed offline
    for i in range(stats.offered):
        expected.push(i, i * 0.02)
    assert (stats.lost, stats.duplicated, stats.reordered) == (
        expected.stats.lost,
        expected.stats.duplicated,
        expected.stats.reordered,
    )
    assert stats.lost > 0 and stats.duplicated > 0 and stats.reordered > 0

    # The server sees exactly that: gaps, repeated numbers and swapped neighbours.
    seqs = [int(m["sequenceNumber"]) for m in media(side.messages)]
    assert len(seqs) == stats.sent
    assert stats.offered - len(set(seqs)) == stats.lost
    assert len(seqs) - len(set(seqs)) == stats.duplicated
    assert sum(b < a for a, b in pairwise(seqs)) == stats.reordered
    assert side.messages[-1]["event"] == "stop"


async def test_what_twilio_cannot_use_is_ignored_and_the_call_goes_on(
    server: tuple[StreamServer, str],
) -> None:
    side, url = server
    async with SimulatedCaller(url, auth_token=None) as caller:
        await side.wait_for(lambda m: m["event"] == "start")
        assert "X-Twilio-Signature" not in side.headers
        assert side.ws is not None
        await side.ws.send("not json")
        await side.send({"event": "dance", "streamSid": caller.stream_sid})
        await side.send({"event": "mark", "streamSid": "MZ-someone-else", "mark": {"name": "x"}})
        await side.send({"event": "media", "streamSid": caller.stream_sid, "media": {"payload": "%%%"}})
        await side.mark(caller.stream_sid, "still-here")
        await side.wait_for_mark("still-here")
        assert caller.protocol_errors == 4
        assert [e.name for e in caller.mark_echoes] == ["still-here"]
        with pytest.raises(ValueError, match="DTMF"):
            await caller.press("x")
