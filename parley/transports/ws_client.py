"""A Python client of the WebSocket protocol, for benchmarks, tests and scripts.

It keeps every message and audio frame it receives with its arrival time (monotonic), so callers can
measure what a remote user would experience.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from websockets.asyncio.client import ClientConnection, connect

from parley.audio.frame import PCM16
from parley.engine.events import now
from parley.transports.inbox import MessageInbox
from parley.transports.ws_protocol import decode_audio, encode_audio


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    seq: int
    play_ms: float
    """The server's play time for the frame's first sample (server clock, ms)."""
    pcm: PCM16
    arrival: float


AudioHandler = Callable[[ReceivedFrame], None]
MessageHandler = Callable[[dict[str, Any]], None]


class LiveClient(MessageInbox):
    def __init__(
        self,
        ws: ClientConnection,
        on_audio: AudioHandler | None = None,
        on_message: MessageHandler | None = None,
    ) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.frames: list[ReceivedFrame] = []
        self.last_audio_seq = -1
        self.last_event_seq = -1
        self.session_id: str | None = None
        self.token: str | None = None
        self._on_audio = on_audio
        self._on_message = on_message
        self._seq = 0
        self._new = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, on_audio: AudioHandler | None = None, on_message: MessageHandler | None = None
    ) -> LiveClient:
        ws = await connect(url, compression=None, max_size=1 << 22, open_timeout=10, ping_interval=None)
        return cls(ws, on_audio, on_message)

    @property
    def closed(self) -> bool:
        return self._reader.done()

    async def send(self, message: dict[str, Any] | str) -> None:
        await self.ws.send(message if isinstance(message, str) else json.dumps(message))

    async def send_audio(self, pcm: PCM16, timestamp_ms: float = 0.0) -> int:
        self._seq += 1
        await self.ws.send(encode_audio(self._seq, timestamp_ms, pcm.astype("<i2", copy=False).tobytes()))
        return self._seq

    async def start(
        self,
        agent: str | None = None,
        sample_rate: int = 16000,
        output_rate: int | None = None,
        limit_s: float = 30.0,
        token: str | None = None,
    ) -> dict[str, Any]:
        """Start a session: of a public ``agent``, or of the call a REST-minted ``token`` was made for."""
        mark = len(self.messages)
        await self.send(
            {
                "type": "start",
                "agent": agent,
                "token": token,
                "audio": {"sample_rate": sample_rate},
                "output": {"sample_rate": output_rate},
            }
        )
        started = await self.wait_for(("session.started", "error"), limit_s, since=mark)
        if started["type"] == "session.started":
            self.session_id, self.token = started["session_id"], started["token"]
        return started

    async def resume(
        self,
        session_id: str,
        token: str,
        last_audio_seq: int = -1,
        last_event_seq: int = -1,
        limit_s: float = 10.0,
    ) -> dict[str, Any]:
        mark = len(self.messages)
        await self.send(
            {
                "type": "resume",
                "session_id": session_id,
                "token": token,
                "last_audio_seq": last_audio_seq,
                "last_event_seq": last_event_seq,
            }
        )
        reply = await self.wait_for(("session.resumed", "error"), limit_s, since=mark)
        if reply["type"] == "session.resumed":
            self.session_id, self.token = session_id, token
            self._seq = max(self._seq, int(reply["last_inbound_seq"]))  # numbering carries on
        return reply

    async def wait_closed(self, limit_s: float = 5.0) -> None:
        async with asyncio.timeout(limit_s):
            await asyncio.shield(self._reader)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        with contextlib.suppress(Exception):
            await self._reader

    def abort(self) -> None:
        """Drop the connection without a closing handshake, as a lost network would."""
        self.ws.transport.abort()
        self._reader.cancel()

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for data in self.ws:
                arrival = now()
                if isinstance(data, bytes):
                    seq, play_ms, pcm = decode_audio(data)
                    frame = ReceivedFrame(seq, play_ms, pcm, arrival)
                    self.last_audio_seq = max(self.last_audio_seq, seq)
                    if self._on_audio is not None:
                        self._on_audio(frame)
                    else:
                        self.frames.append(frame)
                    continue
                message = json.loads(data)
                message["_arrival"] = arrival
                if "seq" in message:
                    self.last_event_seq = max(self.last_event_seq, int(message["seq"]))
                self.messages.append(message)
                if self._on_message is not None:
                    self._on_message(message)
                self._new.set()
        self._new.set()


class StreamingMic:
    """Streams a client's microphone in real time: queued speech when there is some, silence otherwise.

    ``run`` paces itself; a benchmark driving many clients calls ``next_frame`` from one shared ticker.
    Each frame is sent when its last sample has been "captured", as a sound card delivers it.
    """

    def __init__(self, client: LiveClient, sample_rate: int = 16000, frame_ms: int = 20) -> None:
        self.client = client
        self.sample_rate = sample_rate
        self.frame_s = frame_ms / 1000
        self.frame_samples = sample_rate * frame_ms // 1000
        self._queue: list[tuple[PCM16, asyncio.Future[float]]] = []
        self._current: PCM16 = np.zeros(0, np.int16)
        self._silence = np.zeros(self.frame_samples, np.int16)

    async def say(self, pcm: PCM16) -> float:
        """Speak ``pcm`` (after anything queued before it); returns when its last frame was sent, with
        the (client-clock) time its first sample was captured."""
        loop = asyncio.get_running_loop()
        started: asyncio.Future[float] = loop.create_future()
        done: asyncio.Future[float] = loop.create_future()
        self._queue.append((pcm, started))
        self._queue.append((np.zeros(0, np.int16), done))  # resolves when the speech has been sent
        start = await started
        await done
        return start

    @property
    def speaking(self) -> bool:
        return bool(len(self._current) or self._queue)

    def next_frame(self, t: float) -> PCM16:
        """The frame whose first sample is captured at ``t``."""
        if not len(self._current) and self._queue:
            self._current, started = self._queue.pop(0)
            if not started.done():
                started.set_result(t)
        if not len(self._current):
            return self._silence
        frame, self._current = self._current[: self.frame_samples], self._current[self.frame_samples :]
        if len(frame) < self.frame_samples:
            frame = np.concatenate([frame, self._silence[: self.frame_samples - len(frame)]])
        return frame

    async def run(self) -> None:
        t = now()
        while not self.client.closed:
            frame = self.next_frame(t)
            t += self.frame_s
            delay = t - now()
            if delay > 0:
                await asyncio.sleep(delay)
            with contextlib.suppress(Exception):
                await self.client.send_audio(frame, (t - self.frame_s) * 1000)
