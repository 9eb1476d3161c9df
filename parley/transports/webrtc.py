"""The WebRTC transport's media and data plumbing (aiortc): Opus audio both ways, JSON over a data channel.

The browser's audio stack then does what it does best (echo cancellation, jitter buffering, Opus
concealment); the control messages are the WebSocket protocol's JSON, carried on an ``RTCDataChannel``.
Only the wire lives here; which session a peer talks to is ``parley/server/webrtc.py``'s business.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
import av
import numpy as np
import structlog
from aiortc import InvalidStateError, RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from parley.audio.frame import PCM16, AudioFrame
from parley.engine.events import now
from parley.transports.ws_protocol import dumps, server_message

OPUS_RATE = 48000
"""Opus always runs at 48 kHz; the outbound track is produced at this rate so nothing resamples twice."""

_CLEAR = dumps(server_message("audio.clear"))

log = structlog.get_logger("parley.transports.webrtc")


def restrict_ice_to(addresses: Sequence[str]) -> None:
    """Gather host candidates on ``addresses`` only (aioice skips loopback, and would use every
    interface). Process-wide: aioice has no per-connection setting for it, so this replaces its
    module-level ``get_host_addresses`` (guarded by tests/transports/test_private_parts.py)."""
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses


def peer_connection() -> RTCPeerConnection:
    """A peer connection with host candidates only: no STUN or TURN server is ever contacted."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


def without_mdns_candidates(sdp: str) -> str:
    """Drop ``.local`` candidates, which aioice would resolve by multicast DNS on the network."""
    lines = sdp.splitlines()
    kept = [line for line in lines if not (line.startswith("a=candidate:") and ".local " in line)]
    return "\r\n".join(kept) + "\r\n"


class MalformedOffer(ValueError):
    """SDP that does not parse. The parser's own words are for the log: they say nothing a client can
    act on, and describe the library rather than the offer."""


_MICROPHONE = ("sendrecv", "sendonly")


def offer_problem(offer_sdp: str) -> str | None:
    """What an offer lacks for a live session, said so its author can fix it (None: nothing), or
    ``MalformedOffer``. A session needs one audio section the client sends on (the microphone) and a
    data channel (the control messages); aiortc would answer an offer without them, and the session
    would then hear nothing or say nothing."""
    if not offer_sdp.startswith("v=0"):
        raise MalformedOffer("the description does not begin with v=0")
    try:
        description = SessionDescription.parse(offer_sdp)
    except Exception as exc:  # the parser raises whatever its code meets: ValueError, AssertionError, …
        raise MalformedOffer(f"{type(exc).__name__}: {exc}") from exc
    audio = [media for media in description.media if media.kind == "audio"]
    if not audio:
        return "the offer has no audio section: add the microphone's track before creating the offer"
    sending = [media for media in audio if media.direction in _MICROPHONE]
    if not sending:
        directions = " and ".join(sorted({media.direction or "without a direction" for media in audio}))
        return (
            f"the offer's audio section is {directions}: the client must send its microphone "
            "(a=sendrecv or a=sendonly)"
        )
    if len(sending) > 1:
        return f"the offer sends {len(sending)} audio tracks; send one, the microphone"
    if not any(media.kind == "application" and "SCTP" in media.profile for media in description.media):
        return (
            "the offer has no data channel: create one before the offer (control messages and "
            "the session's events travel on it)"
        )
    return None


def without_receive_buffering(pc: RTCPeerConnection) -> None:
    """Hand each audio packet on as soon as the next one shows it complete (20 ms), not four frames
    later (aiortc's default, 80 ms): the recogniser needs no smooth playout, only the audio soon, and
    a listener's playout margin is its own. Reaches into aiortc's private receiver state (pinned in
    pyproject, guarded by tests/transports/test_private_parts.py); if that moves, the default stays and a
    warning says so."""
    for receiver in pc.getReceivers():
        if receiver.track is not None and receiver.track.kind == "audio":
            _set_prefetch(receiver, 1)


_JITTER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


def _set_prefetch(receiver: RTCRtpReceiver, frames: int) -> None:
    current = getattr(receiver, _JITTER_BUFFER, None)
    if isinstance(current, JitterBuffer):
        setattr(receiver, _JITTER_BUFFER, JitterBuffer(capacity=current.capacity, prefetch=frames))
        return
    log.warning(
        "webrtc_receive_buffering_unchanged",
        reason=f"aiortc's RTCRtpReceiver has no JitterBuffer at {_JITTER_BUFFER} any more",
        found=type(current).__name__,
        prefetch_wanted=frames,
    )


class PacedAudioTrack(MediaStreamTrack):
    """An outbound audio track that plays a FIFO of PCM in real time, and silence when it is empty.

    RTP needs a steady clock; pacing happens here because aiortc's sender sends whatever ``recv``
    returns at once. ``clear`` drops what is queued (barge-in).
    """

    kind = "audio"

    def __init__(self, sample_rate: int = OPUS_RATE, frame_ms: int = 20, max_buffered_s: float = 1.0) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.max_buffered = int(max_buffered_s * sample_rate)
        self._chunks: deque[PCM16] = deque()
        self._buffered = 0
        self._room = asyncio.Event()
        self._room.set()
        self._start: float | None = None
        self._pts = 0
        self.voiced_frames = 0

    @property
    def buffered_samples(self) -> int:
        return self._buffered

    def push(self, pcm: PCM16) -> None:
        if len(pcm):
            self._chunks.append(pcm)
            self._buffered += len(pcm)
            if self._buffered > self.max_buffered:
                self._room.clear()

    async def wait_room(self) -> None:
        """Hold the caller while more than ``max_buffered_s`` waits to be played."""
        while self._buffered > self.max_buffered and self.readyState == "live":
            await self._room.wait()

    def clear(self) -> None:
        self._chunks.clear()
        self._buffered = 0
        self._room.set()

    def stop(self) -> None:
        super().stop()
        self._room.set()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = now()
        else:
            delay = self._start + self._pts / self.sample_rate - now()
            if delay > 0:
                await asyncio.sleep(delay)
        pcm = self._take(self.frame_samples)
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._pts += self.frame_samples
        return frame

    def _take(self, count: int) -> PCM16:
        out = np.zeros(count, np.int16)
        filled = 0
        while filled < count and self._chunks:
            chunk = self._chunks[0]
            n = min(count - filled, len(chunk))
            out[filled : filled + n] = chunk[:n]
            filled += n
            if n == len(chunk):
                self._chunks.popleft()
            else:
                self._chunks[0] = chunk[n:]
        if filled:
            self.voiced_frames += 1
        self._buffered -= filled
        if self._buffered <= self.max_buffered:
            self._room.set()
        return out


async def pump_inbound(
    track: MediaStreamTrack, sample_rate: int, deliver: Callable[[PCM16, float], None]
) -> None:
    """Decode an inbound audio track into mono PCM16 at ``sample_rate``, with each frame's arrival time,
    until the track ends."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            return
        arrival = now()
        assert isinstance(frame, av.AudioFrame)
        for out in resampler.resample(frame):
            deliver(out.to_ndarray().reshape(-1).astype(np.int16, copy=False), arrival)


class RtcPeer:
    """One browser (or client) over WebRTC, as a live session sees a connection: agent audio goes to
    the outbound track, messages to the data channel. Nothing here waits but ``send_audio``.

    What waits to be sent is bounded: ``max_pending`` messages before the channel opens, and
    ``max_buffered_bytes`` in the channel's send buffer after (a client that stops acknowledging
    makes aiortc buffer without limit). Past the bound messages are dropped; a buffer still full
    ``stall_s`` later means the client is not reading, and the peer connection is closed.
    """

    def __init__(
        self,
        pc: RTCPeerConnection,
        track: PacedAudioTrack,
        *,
        max_pending: int = 256,
        max_buffered_bytes: int = 256 * 1024,
        stall_s: float = 5.0,
        on_dropped: Callable[[], None] | None = None,
        on_stalled: Callable[[], None] | None = None,
    ) -> None:
        self.pc = pc
        self.track = track
        self.channel: RTCDataChannel | None = None
        self.max_pending = max_pending
        self.max_buffered_bytes = max_buffered_bytes
        self.stall_s = stall_s
        self.session_id: str | None = None
        """For the logs."""
        self.dropped = 0
        self.stalled = False
        self._on_dropped = on_dropped
        self._on_stalled = on_stalled
        self._watch: asyncio.TimerHandle | None = None
        self._pending: list[str] = []
        self._closing = False
        self._closed = asyncio.Event()
        self._closer: asyncio.Task[None] | None = None

    def bind(self, channel: RTCDataChannel) -> None:
        """The client's data channel arrived; what was said before it opened goes out first."""
        self.channel = channel
        if channel.readyState == "open":
            self._flush()
        else:
            channel.on("open", self._flush)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for text in pending:
            self._send_text(text)

    def _send_text(self, text: str) -> None:
        channel = self.channel
        if channel is None or channel.readyState != "open":
            if len(self._pending) < self.max_pending:
                self._pending.append(text)
            else:
                self._drop()
            return
        if channel.bufferedAmount + len(text) > self.max_buffered_bytes:
            self._drop()
            self._arm_watch()
            return
        try:
            channel.send(text)
        except InvalidStateError:  # the transport went away; the close path notices
            self._drop()
        except ValueError as exc:  # larger than the client accepts (its SDP's max-message-size)
            log.warning("webrtc.message_too_large", session_id=self.session_id, error=str(exc))
            self._drop()

    def _drop(self) -> None:
        self.dropped += 1
        if self._on_dropped is not None:
            self._on_dropped()

    def _arm_watch(self) -> None:
        if self._watch is None and not self.stalled and not self._closing:
            self._watch = asyncio.get_running_loop().call_later(self.stall_s, self._look)

    def _look(self) -> None:
        """A message was dropped ``stall_s`` ago: a send buffer not even half drained since means
        nobody reads it."""
        self._watch = None
        channel = self.channel
        if self._closing or channel is None or channel.readyState != "open":
            return
        if channel.bufferedAmount >= self.max_buffered_bytes // 2:
            self.stalled = True
            log.warning(
                "webrtc.client_not_reading", session_id=self.session_id, buffered=channel.bufferedAmount
            )
            if self._on_stalled is not None:
                self._on_stalled()
            self.close(1008, "client is not reading")

    # --- the live session's Connection --------------------------------------------------------------

    def send_message(self, message: dict[str, Any]) -> None:
        if not self._closing:
            self._send_text(dumps(message))

    async def send_audio(self, seq: int, frame: AudioFrame) -> None:
        if self._closing:
            return
        self.track.push(self._at_output_rate(frame))
        await self.track.wait_room()

    def queue_audio(self, seq: int, frame: AudioFrame) -> None:
        if not self._closing:
            self.track.push(self._at_output_rate(frame))

    def send_clear(self) -> None:
        self.track.clear()
        self.send_message_raw(_CLEAR)

    def send_message_raw(self, text: str) -> None:
        if not self._closing:
            self._send_text(text)

    def close(self, code: int, reason: str) -> None:
        """Let queued messages leave, then hang up the peer connection."""
        if self._closer is None:
            self._closing = True
            self._closer = asyncio.create_task(self._close_soon())

    async def wait_closed(self) -> None:
        await self._closed.wait()

    async def abandon(self) -> None:
        self._closing = True
        await self._shutdown()

    def _at_output_rate(self, frame: AudioFrame) -> PCM16:
        if frame.sample_rate != self.track.sample_rate:
            raise ValueError(
                f"agent audio at {frame.sample_rate} Hz; the track runs at {self.track.sample_rate}"
            )
        return frame.pcm

    async def _close_soon(self) -> None:
        channel = self.channel
        for _ in range(50):  # aiortc has no event for "buffer drained"; give it up to a second
            if channel is None or channel.readyState != "open" or not channel.bufferedAmount:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)  # SCTP acknowledges what it sent before the transport goes
        await self._shutdown()

    async def _shutdown(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        self.track.stop()
        try:
            await self.pc.close()
        except Exception:  # aiortc tearing down a half-broken connection; the peer is gone either way
            log.exception("webrtc.close_failed", session_id=self.session_id)
        finally:
            self._closed.set()
