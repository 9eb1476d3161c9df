"""The private parts of aiortc and aioice that parley/transports/webrtc.py reaches into are still there.

pyproject pins both below their next minor release; raising a bound is safe only with this file green.
Each test fails with the name of what moved, rather than WebRTC audio quietly arriving 60 ms later or
ICE quietly offering every interface of the machine.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator

import aioice
import aioice.ice
import pytest
import structlog
from aiortc import RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer

from parley.transports import webrtc


@pytest.fixture
async def answerer(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RTCPeerConnection]:
    """A peer connection that took an audio offer: its receiver has a remote audio track, as on the server.

    Only loopback host candidates are gathered, and no answer is made, so nothing is sent anywhere.
    """
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)  # undone after
    webrtc.restrict_ice_to(["127.0.0.1"])
    offerer, answering = RTCPeerConnection(), RTCPeerConnection()
    try:
        offerer.addTransceiver("audio", direction="sendrecv")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answering.setRemoteDescription(offerer.localDescription)
        yield answering
    finally:
        await offerer.close()
        await answering.close()


def _jitter_buffer(receiver: RTCRtpReceiver) -> JitterBuffer:
    assert hasattr(receiver, webrtc._JITTER_BUFFER), (
        f"aiortc's RTCRtpReceiver has no {webrtc._JITTER_BUFFER} any more: "
        "without_receive_buffering no longer does anything"
    )
    buffer = getattr(receiver, webrtc._JITTER_BUFFER)
    assert isinstance(buffer, JitterBuffer), f"{webrtc._JITTER_BUFFER} is now a {type(buffer).__name__}"
    return buffer


async def test_an_audio_receiver_keeps_its_jitter_buffer_where_we_reach_for_it() -> None:
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("audio").receiver
        buffer = _jitter_buffer(receiver)
        # The docstring's "four frames later (aiortc's default, 80 ms)".
        assert (buffer.capacity, buffer._prefetch) == (16, 4)
    finally:
        await pc.close()


async def test_without_receive_buffering_really_sets_prefetch_to_one(answerer: RTCPeerConnection) -> None:
    (receiver,) = [r for r in answerer.getReceivers() if r.track is not None and r.track.kind == "audio"]
    before = _jitter_buffer(receiver)
    with structlog.testing.capture_logs() as logs:
        webrtc.without_receive_buffering(answerer)
    after = _jitter_buffer(receiver)
    assert after is not before and after._prefetch == 1 and after.capacity == before.capacity
    assert logs == []


def test_a_receiver_without_that_buffer_leaves_a_warning_not_silence() -> None:
    class MovedReceiver:
        """What a future aiortc's receiver might look like to us: no such attribute."""

    with structlog.testing.capture_logs() as logs:
        webrtc._set_prefetch(MovedReceiver(), 1)  # type: ignore[arg-type]
    assert [(e["log_level"], e["event"]) for e in logs] == [("warning", "webrtc_receive_buffering_unchanged")]
    assert webrtc._JITTER_BUFFER in logs[0]["reason"]


def test_aioice_still_has_the_host_address_function_we_replace() -> None:
    original = aioice.ice.get_host_addresses
    assert inspect.isfunction(original), "aioice.ice.get_host_addresses is gone or no longer a function"
    assert list(inspect.signature(original).parameters) == ["use_ipv4", "use_ipv6"]
    # aioice must still look it up in its module when gathering, or replacing it changes nothing.
    assert "get_host_addresses" in inspect.getsource(aioice.ice.Connection.gather_candidates)


async def test_restrict_ice_to_limits_gathered_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)  # undone after
    webrtc.restrict_ice_to(["127.0.0.1"])
    connection = aioice.Connection(ice_controlling=True, components=1)
    try:
        await connection.gather_candidates()
        hosts = {candidate.host for candidate in connection.local_candidates}
    finally:
        await connection.close()
    assert hosts == {"127.0.0.1"}
