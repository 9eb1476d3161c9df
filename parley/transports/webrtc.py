"""The WebRTC transport's media and data plumbing (aiortc): Opus audio both ways, JSON over a data channel.

The browser's audio stack then does what it does best (echo cancellation, jitter buffering, Opus
concealment); the control messages are the WebSocket protocol's JSON, carried on an ``RTCDataChannel``.
Only the wire lives here; which session a peer talks to is ``parley/server/webrtc.py``'s business.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import aioice.ice
import av
import numpy as np
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.audio.frame import PCM16, AudioFrame
from parley.engine.events import now
from parley.transports.ws_protocol import dumps, server_message

OPUS_RATE = 48000
"""Opus always runs at 48 kHz; the outbound track is produced at this rate so nothing resamples twice."""

_CLEAR = dumps(server_message("audio.clear"))


def restrict_ice_to(addresses: Sequence[str]) -> None:
    """Gather host candidates on ``addresses`` only (aioice skips loopback, and would use every
    interface). Process-wide: aioice has no per-connection setting for it."""
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


def without_receive_buffering(pc: RTCPeerConnection) -> None:
    """Hand each audio packet on as soon as the next one shows it complete (20 ms), not four frames
    later (aiortc's default, 80 ms): the recogniser needs no smooth playout, only the audio soon, and
    a listener's playout margin is its own. Reaches into aiortc; if that changes, the default stays."""
    for receiver in pc.getReceivers():
        if receiver.track is not None and receiver.track.kind == "audio":
            _set_prefetch(receiver, 1)


def _set_prefetch(receiver: RTCRtpReceiver, frames: int) -> None:
    attribute = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attribute, None)
    if isinstance(current, JitterBuffer):
        setattr(receiver, attribute, JitterBuffer(capacity=current.capacity, prefetch=frames))


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
    the outbound track, messages to the data channel. Nothing here waits but ``send_audio``."""

    def __init__(self, pc: RTCPeerConnection, track: PacedAudioTrack) -> None:
        self.pc = pc
        self.track = track
        self.channel: RTCDataChannel | None = None
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
            self._pending.append(text)
            return
        with contextlib.suppress(Exception):  # the transport went away; the close path notices
            channel.send(text)

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
        self.track.stop()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self._closed.set()
