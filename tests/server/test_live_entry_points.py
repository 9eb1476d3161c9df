"""How the live entry points refuse what they cannot serve: a connection over its address's cap, a
``start`` with a sample rate of the wrong JSON type, a text frame that is not UTF-8, and WebRTC offers
that are malformed, lack what a session needs or are not offers at all."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError

from parley.transports.webrtc_client import SpeakingTrack
from parley.transports.ws_protocol import ErrorCode, ProtocolError, parse_client_message
from tests.server.conftest import Served, fast_engines, serving

KEY = "pk_live-entry-points-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}
OFFER = "/v1/sessions/webrtc"


async def raw_socket(served: Served) -> ClientConnection:
    return await connect(served.ws, compression=None, ping_interval=None, open_timeout=10)


# --- the per-address connection cap -------------------------------------------------------------------


async def test_a_connection_over_the_address_cap_is_told_to_try_again_later() -> None:
    """It was refused with HTTP 403 at the upgrade, which reads as an auth failure."""
    async with serving(fast_engines([], []), max_connections_per_ip=2) as served:
        held = [await served.client() for _ in range(2)]
        over = await raw_socket(served)  # the upgrade succeeds ...
        with pytest.raises(ConnectionClosedError):
            await asyncio.wait_for(over.recv(), 5)  # ... and the server closes at once
        assert over.close_code == 1013
        assert over.close_reason is not None and "too many open connections" in over.close_reason
        assert "limit 2" in over.close_reason
        await held[0].close()
        await asyncio.sleep(0.2)
        again = await served.client()
        assert (await again.start())["type"] == "session.started", "a freed connection may be used again"
        for client in (held[1], again):
            await client.close()


# --- sample rates are JSON integers -------------------------------------------------------------------


NOT_AN_INT = "sample_rate: Input should be a valid integer"


@pytest.mark.parametrize(
    ("start", "says"),
    [
        ('{"type": "start", "audio": {"sample_rate": "16000"}}', f"audio.{NOT_AN_INT}, not a string"),
        ('{"type": "start", "audio": {"sample_rate": true}}', f"audio.{NOT_AN_INT}, not true/false"),
        ('{"type": "start", "audio": {"sample_rate": 16000.0}}', f"audio.{NOT_AN_INT}"),
        ('{"type": "start", "output": {"sample_rate": "48000"}}', f"output.{NOT_AN_INT}, not a string"),
    ],
)
def test_a_sample_rate_is_not_coerced(start: str, says: str) -> None:
    with pytest.raises(ProtocolError) as refused:
        parse_client_message(start)
    assert refused.value.code is ErrorCode.INVALID_MESSAGE
    assert says in refused.value.message


async def test_a_start_with_a_string_sample_rate_is_refused_and_the_socket_stays_usable() -> None:
    async with serving(fast_engines([], [])) as served:
        client = await served.client()
        for rate in ('"16000"', "true"):
            mark = len(client.messages)
            await client.send('{"type": "start", "audio": {"sample_rate": ' + rate + "}}")
            error = await client.wait_for("error", 5, since=mark)
            assert error["code"] == "invalid_message" and not error["fatal"], error
            assert "audio.sample_rate" in error["message"]
        assert len(served.runtime.registry) == 0, "no session was started with a guessed rate"
        started = await client.start()
        assert started["type"] == "session.started" and started["audio_in"]["sample_rate"] == 16000
        await client.close()


# --- text frames that are not UTF-8 -------------------------------------------------------------------


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def uvicorn_records() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn's error logger hands its handlers (it does not propagate to pytest's)."""
    kept = Kept()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(kept)
    try:
        yield kept.records
    finally:
        logger.removeHandler(kept)


async def test_a_text_frame_that_is_not_utf8_is_closed_1007_without_a_traceback() -> None:
    async with serving(fast_engines([], [])) as served:
        with uvicorn_records() as records:
            ws = await raw_socket(served)
            await ws.send(b'{"type": "ping"}\xff', text=True)
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1007
            await asyncio.sleep(0.1)
        assert not [r for r in records if r.exc_info], "no traceback for a client's bad bytes"
        said = [r.getMessage() for r in records if r.levelno == logging.WARNING]
        assert any("not UTF-8" in line and "1007" in line for line in said), said
        other = await served.client()
        assert (await other.start())["type"] == "session.started"
        await other.close()


# --- WebRTC offers ------------------------------------------------------------------------------------


async def make_offer(audio: str | None = "sendrecv", channel: bool = True, page: bool = False) -> str:
    """An aiortc offer: the microphone's direction (None: no audio) and whether a data channel is
    open; ``page`` builds it as the voice page does (its track added, then the channel)."""
    pc = RTCPeerConnection()
    try:
        if page:
            pc.addTrack(SpeakingTrack())
        elif audio is not None:
            pc.addTransceiver("audio", direction=audio)
        if channel:
            pc.createDataChannel("parley", ordered=True)
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


async def post_offer(served: Served, body: Any = None, **fields: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        if isinstance(body, bytes):
            return await http.post(OFFER, content=body, headers={"Content-Type": "application/json"})
        return await http.post(OFFER, json={"type": "offer", **fields})


def refused(reply: httpx.Response, status: int, code: str) -> str:
    """The endpoint's one refusal shape: the protocol's ``error`` message."""
    body = reply.json()
    assert reply.status_code == status, reply.text
    assert body["type"] == "error" and body["code"] == code and body["fatal"] is True, body
    return str(body["message"])


async def ended(served: Served) -> None:
    for _ in range(100):
        if not len(served.runtime.registry):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("sessions still live")


async def test_offers_without_the_microphone_or_a_data_channel_are_refused_saying_which() -> None:
    async with serving(fast_engines([], []), session_start_timeout_s=0.3) as served:
        no_audio = await post_offer(served, sdp=await make_offer(audio=None))
        assert "no audio section" in refused(no_audio, 400, "invalid_message")
        deaf = refused(await post_offer(served, sdp=await make_offer("recvonly")), 400, "invalid_message")
        assert "recvonly" in deaf and "microphone" in deaf
        mute = await post_offer(served, sdp=await make_offer(channel=False))
        assert "no data channel" in refused(mute, 400, "invalid_message")
        assert len(served.runtime.registry) == 0, "a refused offer starts no session"
        for offer in (await make_offer(page=True), await make_offer(audio="sendonly")):
            answered = await post_offer(served, sdp=offer)
            assert answered.status_code == 200, answered.text
            assert answered.json()["type"] == "answer"
        await ended(served)  # nobody connects: the sessions end with no_input


async def test_sdp_that_does_not_parse_or_cannot_be_answered_gets_a_generic_message() -> None:
    """aiortc's own words ("not enough values to unpack", "ICE username fragment ...") reached the
    client."""
    async with serving(fast_engines([], [])) as served:
        for garbled in ("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:abc\r\n", "not sdp"):
            message = refused(await post_offer(served, sdp=garbled), 400, "invalid_message")
            assert message == "malformed SDP offer"
        without_ice = "".join(
            line for line in (await make_offer()).splitlines(keepends=True) if not line.startswith("a=ice-")
        )
        message = refused(await post_offer(served, sdp=without_ice), 400, "invalid_message")
        assert message == "the server cannot answer this SDP offer"
        assert len(served.runtime.registry) == 0


@pytest.mark.parametrize(
    ("body", "status", "code", "says"),
    [
        (b'{"sdp": ', 400, "bad_json", "not valid JSON"),
        (b"not json", 400, "bad_json", "not valid JSON"),
        (b'{"sdp": NaN, "type": "offer"}', 400, "bad_json", "finite"),
        (b'{"type": "offer"}', 400, "invalid_message", "sdp: Field required"),
        (b'{"sdp": "v=0", "type": "answer"}', 400, "invalid_message", "type: Input should be 'offer'"),
        (b"[]", 400, "invalid_message", "invalid offer"),
        (b'{"sdp": "' + b"x" * 2_000_000 + b'", "type": "offer"}', 413, "message_too_large", "larger than"),
    ],
)
async def test_a_body_that_is_not_an_offer_gets_the_endpoints_error_shape(
    body: bytes, status: int, code: str, says: str
) -> None:
    """FastAPI's 422 ``detail`` list was this endpoint's only other shape."""
    async with serving(fast_engines([], [])) as served:
        message = refused(await post_offer(served, body), status, code)
        assert says in message and "x" * 50 not in message


@asynccontextmanager
async def on_the_books(tmp_path: Path) -> AsyncIterator[Served]:
    async with serving(fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY) as served:
        yield served


async def calls(served: Served) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
        reply = await http.get("/v1/calls")
        assert reply.status_code == 200, reply.text
        return list(reply.json()["data"])


async def test_refused_offers_write_no_call_records_and_spend_no_token(tmp_path: Path) -> None:
    """Each refused offer wrote a ``bad_offer`` call, a row per request that no cap bounded."""
    async with on_the_books(tmp_path) as served:
        without_ice = "".join(
            line for line in (await make_offer()).splitlines(keepends=True) if not line.startswith("a=ice-")
        )
        bad = [without_ice, "v=0\r\nm=audio x y\r\n", await make_offer(channel=False)]
        for _ in range(3):
            for sdp in bad:
                assert (await post_offer(served, sdp=sdp)).status_code == 400
        await asyncio.sleep(0.3)
        assert await calls(served) == [], "nothing on the books for offers that started no session"
        async with httpx.AsyncClient(base_url=served.base) as http:
            metrics = (await http.get("/metrics")).text
        assert 'parley_errors_total{type="protocol.bad_offer"} 9.0' in metrics, "counted instead"

        async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
            made = await http.post("/v1/agents", json={"name": "desk", "config": {"name": "desk"}})
            assert made.status_code == 201, made.text
            minted = await http.post(f"/v1/agents/{made.json()['id']}/sessions")
            assert minted.status_code == 201, minted.text
        token = minted.json()["token"]
        assert (await post_offer(served, sdp=without_ice, token=token)).status_code == 400
        answered = await post_offer(served, sdp=await make_offer(page=True), token=token)
        assert answered.status_code == 200, "the token survived the refused offer: " + answered.text
        booked = await calls(served)
        assert [c["id"] for c in booked] == [answered.json()["session_id"]]
