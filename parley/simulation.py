"""An in-process phone line for simulations, tests and benchmarks.

A microphone that plays WAV audio into a session in real time (and silence in between, as a real mic
does), and a loudspeaker that records what the agent said on the same clock, honouring flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import numpy as np

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.resample import resample
from parley.engine.conversation import ConversationEngine
from parley.engine.events import now

FRAME_S = 0.02


@dataclass(slots=True)
class Clip:
    start: float
    pcm: PCM16


class Loudspeaker:
    """An ``AudioOutput`` that keeps every frame with its play time; ``clear`` cuts what has not played."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.clips: list[Clip] = []
        self.clears: list[float] = []

    async def write(self, frame: AudioFrame) -> None:
        self.clips.append(Clip(frame.timestamp, frame.pcm))

    async def clear(self) -> None:
        t = now()
        self.clears.append(t)
        kept: list[Clip] = []
        for clip in self.clips:
            if clip.start >= t:
                continue
            played = int((t - clip.start) * self.sample_rate)
            kept.append(clip if played >= len(clip.pcm) else Clip(clip.start, clip.pcm[:played]))
        self.clips = kept

    def audio_after(self, t: float) -> list[Clip]:
        return [c for c in self.clips if c.start + len(c.pcm) / self.sample_rate > t]

    def last_audio_end(self) -> float | None:
        if not self.clips:
            return None
        return max(c.start + len(c.pcm) / self.sample_rate for c in self.clips)


class Microphone:
    """Feeds a session 20 ms frames in real time: queued speech when there is some, silence otherwise.

    Each frame is delivered when its last sample has been "captured" and stamped with its first sample's
    time, as a sound card does.
    """

    def __init__(self, session: ConversationEngine, sample_rate: int = 16000) -> None:
        self.session = session
        self.sample_rate = sample_rate
        self.frame_samples = int(sample_rate * FRAME_S)
        self.recorded: list[Clip] = []
        self._queue: asyncio.Queue[tuple[PCM16, asyncio.Future[float]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Microphone:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def say(self, pcm: PCM16, sample_rate: int) -> float:
        """Play ``pcm`` and return the monotonic time its first sample was captured."""
        if sample_rate != self.sample_rate:
            pcm = resample(pcm, sample_rate, self.sample_rate)
        started: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        done: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        await self._queue.put((pcm, started))
        await self._queue.put((np.zeros(0, np.int16), done))
        start = await started
        await done
        return start

    async def _run(self) -> None:
        silence = np.zeros(self.frame_samples, np.int16)
        current: PCM16 = np.zeros(0, np.int16)
        t = now()
        while True:
            if not len(current) and not self._queue.empty():
                current, marker = self._queue.get_nowait()
                if not marker.done():
                    marker.set_result(t)
            if len(current):
                frame, current = current[: self.frame_samples], current[self.frame_samples :]
                if len(frame) < self.frame_samples:
                    frame = np.concatenate([frame, silence[: self.frame_samples - len(frame)]])
            else:
                frame = silence
            t_end = t + FRAME_S
            delay = t_end - now()
            if delay > 0:
                await asyncio.sleep(delay)
            self.session.feed_audio(AudioFrame(frame, self.sample_rate, t))
            self.recorded.append(Clip(t, frame))
            t = t_end


def voiced_span(pcm: PCM16, sample_rate: int, start: float) -> tuple[float, float]:
    """When the signal itself starts and stops being speech: the first and last 10 ms windows within
    35 dB of the loudest one (and above -55 dBFS). Latency is measured from these, never from the VAD."""
    window = max(1, sample_rate // 100)
    usable = len(pcm) // window * window
    if usable == 0:
        return start, start
    frames = pcm[:usable].astype(np.float64).reshape(-1, window) / 32768.0
    level = 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) + 1e-12)
    voiced = np.nonzero(level > max(-55.0, float(level.max()) - 35.0))[0]
    if len(voiced) == 0:
        return start, start
    return start + int(voiced[0]) * window / sample_rate, start + (int(voiced[-1]) + 1) * window / sample_rate


def agent_silent_at(clips: list[Clip], t: float, sample_rate: int) -> float | None:
    """If agent audio was playing at ``t``, when that unbroken run of audio ended; else None."""
    run_end: float | None = None
    for clip in sorted(clips, key=lambda c: c.start):
        end = clip.start + len(clip.pcm) / sample_rate
        if run_end is not None and clip.start > run_end + 0.005:
            if run_end >= t:
                break
            run_end = None
        if run_end is None:
            if clip.start > t:
                break
            run_end = end
        else:
            run_end = max(run_end, end)
    return run_end if run_end is not None and run_end >= t else None


def mix_stereo(
    left: list[Clip], right: list[Clip], origin: float, end: float, sample_rate: int
) -> tuple[PCM16, PCM16]:
    """Place clips on a common timeline (user left, agent right)."""
    total = max(0, int((end - origin) * sample_rate))
    channels = []
    for clips in (left, right):
        track = np.zeros(total, np.int32)
        for clip in clips:
            at = round((clip.start - origin) * sample_rate)
            if at >= total or at + len(clip.pcm) <= 0:
                continue
            piece = clip.pcm[max(0, -at) : max(0, total - at)]
            at = max(0, at)
            track[at : at + len(piece)] += piece
        channels.append(np.clip(track, -32768, 32767).astype(np.int16))
    return channels[0], channels[1]
