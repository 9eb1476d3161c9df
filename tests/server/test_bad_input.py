"""Bad input gets a clear error and never takes the server (or even the connection) down."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from parley.transports.ws_client import LiveClient
from parley.transports.ws_protocol import encode_audio
from tests.engine.harness import speech
from tests.server.conftest import Served, fast_engines, serving

FRAME = np.zeros(320, np.int16).tobytes()


async def still_serving(served: Served, client: LiveClient) -> None:
    """The connection answers and the server takes new sessions."""
    mark = len(client.messages)
    await client.send({"type": "ping", "id": "alive"})
    assert (await client.wait_for("pong", 5, since=mark))["id"] == "alive"
    assert (await served.get("/healthz")).status_code == 200
    other = await served.client()
    assert (await other.start())["type"] == "session.started"
    await other.close()


async def error_after(client: LiveClient, payload: str | bytes) -> dict[str, object]:
    mark = len(client.messages)
    await client.send(payload) if isinstance(payload, str) else await client.ws.send(payload)
    return await client.wait_for("error", 5, since=mark)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("{not json", "bad_json"),
        ('"just a string"', "invalid_message"),
        ('{"type": "teleport"}', "unknown_message"),
        ('{"type": "text", "text": "hello"}', "not_started"),
        ('{"type": "text", "text": 5}', "invalid_message"),
        ('{"type": "start", "audio": {"sample_rate": 11025}}', "unsupported_sample_rate"),
        ('{"type": "start", "output": {"sample_rate": 96000}}', "unsupported_sample_rate"),
        ('{"type": "start", "agent": "nobody"}', "unknown_agent"),
        (encode_audio(1, 0.0, FRAME), "not_started"),
        ('{"type": "text", "text": "' + "x" * 70_000 + '"}', "message_too_large"),
    ],
)
async def test_bad_messages_before_a_session(payload: str | bytes, code: str) -> None:
    async with serving(fast_engines([], [])) as served:
        client = await served.client()
        error = await error_after(client, payload)
        assert error["code"] == code and error["message"] and not error["fatal"]
        await still_serving(served, client)
        await client.close()


async def test_bad_audio_and_repeated_start_during_a_session() -> None:
    async with serving(fast_engines([], [])) as served:
        client = await served.client()
        await client.start()
        cases = [
            (encode_audio(1, 0.0, np.zeros(16000, np.int16).tobytes()), "frame_too_large"),  # 1 s at once
            (encode_audio(2, 0.0, FRAME)[:-1], "bad_audio_frame"),  # odd byte count
            (b"\x07" + encode_audio(3, 0.0, FRAME)[1:], "bad_audio_frame"),  # unknown version
            (b"\x01\x01", "bad_audio_frame"),  # shorter than the header
            (json.dumps({"type": "start"}), "already_started"),
        ]
        seen: set[str] = set()
        for payload, code in cases:
            if code in seen:
                await asyncio.sleep(1.05)  # per-frame complaints are reported at most once a second per code
            seen.add(code)
            error = await error_after(client, payload)
            assert error["code"] == code, (code, error)
        await still_serving(served, client)
        assert served.runtime.registry.get(client.session_id or "") is not None, "the session lives on"
        await client.close()


async def test_a_flood_is_throttled_without_hurting_other_sessions() -> None:
    async with serving(fast_engines([], []), ws_max_messages_per_s=100.0) as served:
        bystander = await served.client()
        await bystander.start()
        flooder = await served.client()
        await flooder.start()
        for seq in range(1, 1001):  # 20 s of audio as fast as the socket takes it
            await flooder.ws.send(encode_audio(seq, 0.0, FRAME))
        for _ in range(300):
            await flooder.send('{"type": "ping"}')
        error = await flooder.wait_for("error", 5, code="rate_limited")
        assert "dropped" in str(error["message"])
        assert len(flooder.of_type("error")) < 10, "complaints are throttled, not one per dropped frame"
        await asyncio.sleep(1.1)
        await still_serving(served, bystander)
        await still_serving(served, flooder)
        metrics = (await served.get("/metrics")).text
        assert 'parley_errors_total{type="protocol.rate_limited"}' in metrics
        await flooder.close()
        await bystander.close()


async def test_repeated_frames_after_a_reconnect_are_not_heard_twice() -> None:
    async with serving(fast_engines(["hello"], [])) as served:
        client = await served.client()
        await client.start()
        assert client.session_id and client.token
        for seq in range(1, 11):
            await client.ws.send(encode_audio(seq, 0.0, FRAME))
        await asyncio.sleep(0.3)
        client.abort()
        again = await served.client()
        resumed = await again.resume(client.session_id, client.token)
        assert resumed["last_inbound_seq"] == 10
        tone = speech(0.6).pcm
        frames = [tone[i : i + 320] for i in range(0, len(tone) - 319, 320)]
        mark = len(again.messages)
        for index, pcm in enumerate(frames):  # a client replaying audio the server already has
            await again.ws.send(encode_audio(1 + index % 10, 0.0, pcm.tobytes()))
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert not [m for m in again.messages[mark:] if m["type"] == "speech"], "repeats were dropped"
        for pcm in frames:  # the same audio with fresh numbers is heard
            await again.send_audio(pcm)
            await asyncio.sleep(0.02)
        assert await again.wait_for("speech", 5, since=mark, status="started")
        await again.close()


async def test_a_burst_of_pings_within_the_limit_is_answered_and_the_client_kept() -> None:
    """All buffered messages used to be taken before the writer ran once: their answers overflowed the
    outbound queue and a client reading every one was closed as "not reading"."""
    async with serving(fast_engines([], []), outbound_max_messages=32, outbound_stall_s=1.0) as served:
        client = await served.client()
        await client.start()
        for n in range(100):  # within the 200/s limit's burst, far more than the queue holds
            await client.ws.send(f'{{"type": "ping", "id": {n}}}')
        for _ in range(100):
            if len(client.of_type("pong")) == 100:
                break
            await asyncio.sleep(0.05)
        assert len(client.of_type("pong")) == 100
        await asyncio.sleep(1.5)
        assert not client.closed
        await client.close()
