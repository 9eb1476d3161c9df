"""Room test kit: sinks that keep what a listener got, tone sources at any rate, a tick driver."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import numpy as np

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.mixer import tone_dbfs
from parley.engine.events import Event, EventType, Timeline
from parley.rooms import TICK_S, Room


class Ear:
    """A listener's sink: keeps every frame it was written, at its own sample rate."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.frames: list[AudioFrame] = []
        self._wrote = asyncio.Event()

    async def write(self, frame: AudioFrame) -> None:
        self.frames.append(frame)
        self._wrote.set()

    async def wait_for(self, count: int) -> None:
        """Returns once ``count`` frames have arrived."""
        while len(self.frames) < count:
            self._wrote.clear()
            await self._wrote.wait()

    async def clear(self) -> None:
        return None

    def audio(self) -> PCM16:
        return np.concatenate([f.pcm for f in self.frames]) if self.frames else np.zeros(0, np.int16)

    def take(self, skip_s: float = 0.0) -> PCM16:
        """What arrived since the last take (minus its first ``skip_s``, where a resampler's tail from
        before lingers), and start afresh."""
        pcm = self.audio()[round(skip_s * self.sample_rate) :]
        self.frames = []
        return pcm

    def level(self, frequency: float, skip_s: float = 0.1) -> float:
        return tone_dbfs(self.take(skip_s), self.sample_rate, frequency)


class BrokenEar(Ear):
    """A sink whose connection is gone: every write fails."""

    async def write(self, frame: AudioFrame) -> None:
        raise ConnectionResetError("peer went away")


class StuckEar(Ear):
    """A sink that never finishes a write (a peer that stopped reading)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        super().__init__(sample_rate)
        self.release = asyncio.Event()

    async def write(self, frame: AudioFrame) -> None:
        await self.release.wait()


class Tone:
    """A continuous sine at ``frequency`` sampled at ``rate``, handed out 20 ms at a time."""

    def __init__(self, frequency: float, rate: int = 16000, level: float = 0.3) -> None:
        self.frequency, self.rate, self.level = frequency, rate, level
        self._n = 0

    def next(self, seconds: float = TICK_S) -> AudioFrame:
        count = round(seconds * self.rate)
        t = (self._n + np.arange(count)) / self.rate
        self._n += count
        pcm = (self.level * 32767 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        return AudioFrame(pcm, self.rate)

    def silence(self, seconds: float = TICK_S) -> AudioFrame:
        self._n += round(seconds * self.rate)
        return AudioFrame.silence(seconds, self.rate)


async def play(room: Room, ticks: int, sources: Mapping[str, Tone | None]) -> None:
    """``ticks`` room ticks, each preceded by 20 ms from every source (None: that leg is silent) and
    followed by a drain, the way real-time legs interleave with the clock."""
    for _ in range(ticks):
        for participant_id, source in sources.items():
            if source is not None:
                room.leg(participant_id).feed(source.next())
        await room.tick()
        await room.drain()


def events(timeline: Timeline, type_: EventType) -> list[Event]:
    return timeline.of_type(type_)
