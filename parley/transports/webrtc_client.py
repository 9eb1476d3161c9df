"""A Python WebRTC client of the live server (aiortc), for tests and ``parley bench live``.

It talks as the browser does: an Opus microphone track that speaks queued PCM in real time (silence
otherwise), agent audio decoded from the server's track, and JSON messages on a data channel, each
kept with its arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
from collections.abc import Callable
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from parley.audio.frame import PCM16
from parley.engine.events import now
from parley.transports.inbox import MessageInbox
from parley.transports.webrtc import peer_connection, pump_inbound, without_receive_buffering

AudioHandler = Callable[[PCM16, float], None]
MessageHandler = Callable[[dict[str, Any]], None]


class SpeakingTrack(MediaStreamTrack):
    """A microphone: queued speech in real time, silence otherwise (as a sound card delivers it)."""

    kind = "audio"

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 20) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self._queue: list[tuple[PCM16, asyncio.Future[float]]] = []
        self._current: PCM16 = np.zeros(0, np.int16)
        self._start: float | None = None
        self._pts = 0

    async def say(self, pcm: PCM16) -> float:
        """Speak ``pcm``; returns once it has all been captured, with when its first sample was."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[float] = loop.create_future()
        done: asyncio.Future[float] = loop.create_future()
        self._queue += [(pcm, started), (np.zeros(0, np.int16), done)]
        start = await started
        await done
        return start

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = now()
        t = self._start + self._pts / self.sample_rate
        delay = t + self.frame_samples / self.sample_rate - now()
        if delay > 0:  # sent once its last sample has been captured
            await asyncio.sleep(delay)
        frame = av.AudioFrame.from_ndarray(self._next(t).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.sample_rate)
        self._pts += self.frame_samples
        return frame

    def _next(self, t: float) -> PCM16:
        if not len(self._current) and self._queue:
            self._current, started = self._queue.pop(0)
            if not started.done():
                started.set_result(t)
        out = np.zeros(self.frame_samples, np.int16)
        n = min(self.frame_samples, len(self._current))
        out[:n] = self._current[:n]
        self._current = self._current[n:]
        return out


class RtcClient(MessageInbox):
    def __init__(
        self, on_audio: AudioHandler | None = None, on_message: MessageHandler | None = None
    ) -> None:
        self.pc = peer_connection()
        self.mic = SpeakingTrack()
        self.messages: list[dict[str, Any]] = []
        self.session_id: str | None = None
        self._on_audio = on_audio
        self._on_message = on_message
        self._new = asyncio.Event()
        self._gone = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.channel = self.pc.createDataChannel("parley")
        self.channel.on("message", self._received)
        self.channel.on("close", self._closed)
        self.pc.addTrack(self.mic)
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    @classmethod
    async def connect(
        cls,
        base_url: str,
        agent: str | None = None,
        on_audio: AudioHandler | None = None,
        on_message: MessageHandler | None = None,
        output_rate: int = 16000,
        keep_jitter_buffer: bool = False,
    ) -> RtcClient:
        """Offer, answer, and wait for ``session.started`` (or raise saying why not). Agent audio is
        handed on as it arrives unless ``keep_jitter_buffer``: a caller models its own playout."""
        client = cls(on_audio, on_message)
        client.output_rate = output_rate
        await client.pc.setLocalDescription(await client.pc.createOffer())
        offer = client.pc.localDescription
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
            reply = await http.post(
                "/v1/sessions/webrtc", json={"sdp": offer.sdp, "type": offer.type, "agent": agent}
            )
        if reply.status_code != 200:
            await client.close()
            raise ConnectionRefusedError(f"offer refused ({reply.status_code}): {reply.text}")
        answer = reply.json()
        await client.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        if not keep_jitter_buffer:
            without_receive_buffering(client.pc)
        started = await client.wait_for("session.started", 15.0)
        client.session_id = started["session_id"]
        return client

    output_rate = 16000

    @property
    def closed(self) -> bool:
        return self._gone.is_set()

    async def send(self, message: dict[str, Any] | str) -> None:
        if self.channel.readyState == "open":
            self.channel.send(message if isinstance(message, str) else json.dumps(message))

    async def say(self, pcm: PCM16) -> float:
        return await self.mic.say(pcm)

    async def wait_closed(self, limit_s: float = 5.0) -> None:
        async with asyncio.timeout(limit_s):
            await self._gone.wait()

    async def close(self) -> None:
        self.mic.stop()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.pc.close()
        self._closed()

    def _received(self, data: str | bytes) -> None:
        if not isinstance(data, str):
            return
        message = json.loads(data)
        message["_arrival"] = now()
        self.messages.append(message)
        if self._on_message is not None:
            self._on_message(message)
        self._new.set()

    def _closed(self) -> None:
        self._gone.set()
        self._new.set()

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":  # always drained: aiortc queues what nobody reads
            handler = self._on_audio or (lambda pcm, arrival: None)
            task = asyncio.create_task(pump_inbound(track, self.output_rate, handler))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _on_state(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            self._closed()
