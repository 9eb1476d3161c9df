"""Threat: a stranger takes a live connection (or the server's memory) down with what they send or
refuse to read.

The WebSocket and the WebRTC data channel take JSON from anyone who can reach them. A malformed
message (1.5 KB of ``[`` once ended the socket with 1006, and left a data channel open but deaf) must
be answered with an ``error`` naming the problem, and the next message must work. A client that stops
reading must not make the server queue without bound: its connection is closed and its session takes
the dropped-connection path.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from parley.audio.frame import AudioFrame
from parley.engine.session import Session
from parley.providers.llm.scripted import ScriptRule
from parley.server.live import LiveSession
from parley.server.metrics import ServerMetrics
from parley.server.runtime import LiveRuntime
from parley.server.webrtc import RtcControl
from parley.server.ws_outbound import WsConnection
from parley.transports.webrtc import PacedAudioTrack, RtcPeer
from parley.transports.webrtc_client import RtcClient
from parley.transports.ws_client import LiveClient
from tests.server.conftest import Served, fast_engines, serving, settings
from tests.server.test_ws_session import LONG_ANSWER

PROBE = "[" * 1500

MALFORMED: list[tuple[str | bytes, str]] = [
    (PROBE, "bad_json"),
    ("{" * 1500, "bad_json"),
    ('{"type": "ping", "id": ' + "[" * 20 + "]" * 20 + "}", "bad_json"),
    ('{"type": "ping", "id": NaN}', "bad_json"),
    ('{"type": "ping", "id": -Infinity}', "bad_json"),
    ('{"type": "text", "text": "a\x00b"}', "bad_json"),
    ('{"type": "ping", "id": 1e999}', "invalid_message"),
    ('{"type": "ping", "id": ' + "9" * 4000 + "}", "invalid_message"),
    ('{"type": "text", "text": "a\\u0000b"}', "invalid_message"),
    ('{"type": "text", "text": "\\ud800"}', "invalid_message"),
    ('{"type": "text", "text": ["hello"]}', "invalid_message"),
    ('[{"type": "ping"}]', "invalid_message"),
    ("null", "invalid_message"),
    ('{"type": {"nested": "object"}}', "unknown_message"),
    (b'{"type": "ping"}', "bad_audio_frame"),  # JSON in a binary frame
]


async def pong_after(client: LiveClient | RtcClient, ident: str) -> None:
    mark = len(client.messages)
    await client.send({"type": "ping", "id": ident})
    assert (await client.wait_for("pong", 5, since=mark, id=ident))["id"] == ident


@pytest.mark.parametrize(("payload", "code"), MALFORMED)
async def test_a_malformed_message_gets_an_error_and_the_socket_keeps_working(
    payload: str | bytes, code: str
) -> None:
    """Threat: one crafted message ends a caller's connection (or the server) without a word."""
    async with serving(fast_engines([], [])) as served:
        client = await served.client()
        await client.start()
        mark = len(client.messages)
        await client.ws.send(payload)
        error = await client.wait_for("error", 5, since=mark)
        assert error["code"] == code and error["message"] and not error["fatal"], error
        await pong_after(client, "after")
        assert not client.closed
        live = served.runtime.registry.get(client.session_id or "")
        assert live is not None and live.connection is not None, "the session carries on"
        await client.close()


async def test_the_probe_before_a_session_leaves_the_socket_ready_to_start() -> None:
    """Threat: the deep-nesting probe, sent first, ends the socket so no session can follow on it."""
    async with serving(fast_engines([], [])) as served:
        client = await served.client()
        mark = len(client.messages)
        await client.send(PROBE)
        assert (await client.wait_for("error", 5, since=mark))["code"] == "bad_json"
        await pong_after(client, "ready")
        assert (await client.start())["type"] == "session.started"
        await client.close()


async def test_a_server_bug_is_an_internal_error_and_a_1011_close(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threat: an unexpected exception drops the socket silently (1006) and hides the bug."""

    def broken(self: Session, text: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Session, "send_text", broken)
    async with serving(fast_engines([], [])) as served:
        client = await served.client()
        await client.start()
        mark = len(client.messages)
        await client.send({"type": "text", "text": "hello"})
        error = await client.wait_for("error", 5, since=mark)
        assert error["code"] == "internal" and error["fatal"]
        await client.wait_closed(5)
        assert client.ws.close_code == 1011
        live = served.runtime.registry.get(client.session_id or "")
        assert live is not None and not live.closed, "the session waits for its client to come back"
        other = await served.client()
        await pong_after(other, "still serving")
        await other.close()


# --- a client that stops reading ------------------------------------------------------------------


async def not_reading_client(served: Served) -> Any:
    """A client that, once its session started, never reads again. Both ends' socket buffers are made
    small (the server's through its listening socket, which accepted sockets copy), so what the
    server sends backs up in seconds rather than after the megabytes a kernel would otherwise hold."""
    for listener in served.server.servers:
        for server_sock in listener.sockets:
            server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    host, port = served.base.removeprefix("http://").split(":")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(served.ws, sock=sock, max_queue=1, compression=None, ping_interval=None)
    await ws.send(json.dumps({"type": "start", "output": {"sample_rate": 48000}}))
    while True:
        message = await ws.recv()
        if isinstance(message, str) and json.loads(message)["type"] == "session.started":
            return ws, json.loads(message)


async def test_a_client_that_stops_reading_is_closed_and_its_session_waits_for_it() -> None:
    """Threat: a client that never reads makes the server queue its messages and audio without end."""
    engines = fast_engines([], [ScriptRule.say("Paris", LONG_ANSWER * 3)])
    bound = 16
    async with serving(engines, outbound_max_messages=bound, outbound_stall_s=1.0) as served:
        ws, started = await not_reading_client(served)
        (connection,) = [c for c in served.runtime.connections if isinstance(c, WsConnection)]
        live = served.runtime.registry.get(started["session_id"])
        assert live is not None and live.connection is connection
        await ws.send(json.dumps({"type": "text", "text": "Tell me about Paris."}))
        for _ in range(300):  # polled, not timed: the agent talks into a socket nobody reads
            assert connection.queued_messages <= bound
            assert connection.queued_audio <= connection.max_audio_pending
            if connection.stalled:
                break
            await asyncio.sleep(0.1)
        assert connection.stalled, "the connection was given up"
        assert connection.peak_pending <= bound + connection.max_audio_pending
        assert live.connection is None and not live.closed, "the session waits for a reconnect"
        metrics = (await served.get("/metrics")).text
        assert 'parley_slow_client_closes_total{transport="websocket"} 1.0' in metrics

        with pytest.raises(ConnectionClosed) as closed:  # reading again: what was sent, then the close
            while True:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert closed.value.rcvd.reason == "client is not reading"

        again = await served.client()
        resumed = await again.resume(started["session_id"], started["token"])
        assert resumed["type"] == "session.resumed"
        await again.close()


class BlockedSocket:
    """A WebSocket whose client never reads: every write waits until ``release``."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.sent = 0
        self.closed_with: tuple[int, str] | None = None

    async def send_text(self, text: str) -> None:
        await self.released.wait()
        self.sent += 1

    async def send_bytes(self, data: bytes) -> None:
        await self.released.wait()
        self.sent += 1

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


async def test_the_outbound_queues_stay_bounded_while_nobody_reads() -> None:
    """Threat: memory grows with every event of a session whose client stopped reading."""
    ws = BlockedSocket()
    stalled: list[bool] = []
    dropped: list[bool] = []
    connection = WsConnection(
        ws,  # type: ignore[arg-type]
        on_dropped=lambda: dropped.append(True),
        max_audio_pending=20,
        max_messages_pending=10,
        stall_s=0.2,
        on_stalled=lambda: stalled.append(True),
    )
    frame = AudioFrame(np.zeros(320, np.int16), 16000, 0.0)
    playing = asyncio.create_task(connection.send_audio(0, frame))  # straight to the socket: blocks
    await asyncio.sleep(0)
    for seq in range(1, 500):
        connection.send_message({"type": "state", "n": seq})
        await connection.send_audio(seq, frame)  # queued behind the blocked write
        assert connection.queued_messages <= 10 and connection.queued_audio <= 20
    assert connection.peak_pending <= 30
    assert len(dropped) == connection.dropped > 0
    for _ in range(100):
        if stalled:
            break
        await asyncio.sleep(0.05)
    assert stalled == [True] and connection.closing
    assert connection.queued_messages == connection.queued_audio == 0, "what nobody reads is let go"
    ws.released.set()  # the client reads again: the close follows the write that was in flight
    await asyncio.wait_for(playing, 5)
    await asyncio.wait_for(connection.wait_closed(), 5)
    assert ws.closed_with == (1008, "client is not reading")
    assert ws.sent == 1


# --- WebRTC -----------------------------------------------------------------------------------------


async def test_the_probe_over_the_data_channel_gets_an_error_and_the_channel_still_listens() -> None:
    """Threat: one message turns the data channel deaf while it still shows "open"."""
    async with serving(fast_engines([], [])) as served:
        client = await RtcClient.connect(served.base)
        for payload, code in [(PROBE, "bad_json"), ('{"type": "ping", "id": NaN}', "bad_json")]:
            mark = len(client.messages)
            await client.send(payload)
            assert (await client.wait_for("error", 5, since=mark))["code"] == code
            await pong_after(client, f"after {code}")
        assert client.channel.readyState == "open"
        await client.close()


class FakePeer:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.closed_with: tuple[int, str] | None = None

    def send_message(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


def rtc_control(send_text: Callable[[str], None] = lambda text: None) -> tuple[RtcControl, FakePeer]:
    engine = SimpleNamespace(state="listening", idle=True, send_text=send_text)
    live = SimpleNamespace(id="s1", engine=engine, touch=lambda: None)
    runtime = SimpleNamespace(settings=settings(), metrics=ServerMetrics())
    peer = FakePeer()
    control = RtcControl(cast(LiveRuntime, runtime), cast(LiveSession, live), cast(RtcPeer, peer))
    return control, peer


@pytest.mark.parametrize(("payload", "code"), [m for m in MALFORMED if isinstance(m[0], str)])
async def test_every_malformed_data_channel_message_is_answered(payload: str, code: str) -> None:
    """Threat: an exception escapes into aiortc's receive loop and the channel stops hearing anything."""
    control, peer = rtc_control()
    control.on_message(payload)
    assert peer.sent[-1]["type"] == "error" and peer.sent[-1]["code"] == code
    control.on_message('{"type": "ping", "id": 1}')
    assert peer.sent[-1]["type"] == "pong" and peer.sent[-1]["id"] == 1
    assert peer.closed_with is None


async def test_a_server_bug_on_the_data_channel_is_an_internal_error_and_a_close() -> None:
    """Threat: a bug behind one message leaves the peer connection half alive and says nothing."""

    def broken(text: str) -> None:
        raise RuntimeError("a bug")

    control, peer = rtc_control(broken)
    control.on_message('{"type": "text", "text": "hello"}')  # does not raise into aiortc
    assert peer.sent[-1]["code"] == "internal" and peer.sent[-1]["fatal"]
    assert peer.closed_with == (1011, "internal error")


class UnreadChannel:
    """A data channel whose peer acknowledges nothing: aiortc's buffer only grows."""

    readyState = "open"

    def __init__(self) -> None:
        self.bufferedAmount = 0

    def send(self, text: str) -> None:
        self.bufferedAmount += len(text.encode())

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        pass


class FakePc:
    async def close(self) -> None:
        pass


async def test_a_data_channel_nobody_reads_stays_bounded_and_is_closed() -> None:
    """Threat: a WebRTC client that stops acknowledging makes aiortc buffer the server's messages forever."""
    stalled: list[bool] = []
    peer = RtcPeer(
        FakePc(),  # type: ignore[arg-type]
        PacedAudioTrack(),
        max_pending=8,
        max_buffered_bytes=4096,
        stall_s=0.2,
        on_stalled=lambda: stalled.append(True),
    )
    for n in range(8 + 5):  # before the channel opens: kept up to the bound
        peer.send_message({"type": "state", "n": n})
    assert peer.dropped == 5
    channel = UnreadChannel()
    peer.bind(channel)  # type: ignore[arg-type]
    for n in range(1000):
        peer.send_message({"type": "transcript", "text": "x" * 50, "n": n})
        assert channel.bufferedAmount <= 4096
    assert peer.dropped > 5
    await asyncio.wait_for(peer.wait_closed(), 5)
    assert stalled == [True]
