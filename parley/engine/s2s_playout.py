"""The speech-to-speech provider's audio on its way to the caller: cut into frames at the output's rate
and written on a playout clock of its own, noting which samples of which item were written when.

The provider sends audio in bursts far ahead of real time; pacing it here (rather than letting the
transport buffer it) is what lets a barge-in flush the output and know exactly what was heard. Only the
session's current reply is played: frames of a reply that was stopped or superseded are skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.resample import Resampler
from parley.engine.events import EventType, now
from parley.engine.s2s_reply import PlayedFrame, S2SReply
from parley.engine.transport import AudioOutput

__all__ = ["S2SPlayout"]


@dataclass(frozen=True, slots=True)
class _Chunk:
    reply: S2SReply
    item_id: str
    pcm: PCM16


@dataclass(frozen=True, slots=True)
class _End:
    """Everything of the reply received before this was queued: once played, the reply is done."""

    reply: S2SReply


@dataclass(slots=True)
class _Framer:
    """The reply being received: its resampler, and received audio short of a whole frame (of item
    ``item_id``)."""

    reply: S2SReply
    resampler: Resampler
    pending: PCM16 = field(default_factory=lambda: np.zeros(0, np.int16))
    item_id: str = ""


class S2SPlayout:
    """The play queue and its loop. The session says which reply is current and hears when one starts
    to be heard (``started``) and when it played to the end (``done``); an underrun goes on the
    timeline through ``emit``."""

    def __init__(
        self,
        output: AudioOutput,
        *,
        source_rate: int,
        frame_ms: int,
        lead_s: float,
        underrun_tolerance_s: float,
        current: Callable[[], S2SReply | None],
        started: Callable[[S2SReply], None],
        done: Callable[[S2SReply], None],
        emit: Callable[..., None],
    ) -> None:
        self._output = output
        self._source_rate = source_rate
        self._frame_ms = frame_ms
        self._lead_s = lead_s
        self._tolerance_s = underrun_tolerance_s
        self._current = current
        self._started = started
        self._done = done
        self._emit = emit
        self._queue: asyncio.Queue[_Chunk | _End] = asyncio.Queue()
        self._framer: _Framer | None = None

    def push(self, reply: S2SReply, item_id: str, pcm: PCM16) -> None:
        """Audio the provider sent for ``reply``'s item: resampled, and queued in whole frames."""
        rate = self._output.sample_rate
        framer = self._framer
        if framer is None or framer.reply is not reply:
            framer = self._framer = _Framer(reply, Resampler(self._source_rate, rate))
        pcm = framer.resampler.process(pcm)
        reply.item(item_id).received += len(pcm)
        frame = rate * self._frame_ms // 1000
        pcm = np.concatenate([framer.pending, pcm])
        whole = len(pcm) // frame * frame
        for offset in range(0, whole, frame):
            self._queue.put_nowait(_Chunk(reply, item_id, pcm[offset : offset + frame]))
        reply.count_queued(whole // frame)
        framer.pending, framer.item_id = pcm[whole:], item_id

    def flush(self, reply: S2SReply) -> None:
        """The provider finished a response of ``reply``: queue what is left of its audio as a short frame."""
        framer = self._framer
        if framer is None or framer.reply is not reply:
            return
        self._framer = None
        rest = np.concatenate([framer.pending, framer.resampler.flush()])
        item_id = framer.item_id or next(reversed(reply.items), "")
        if len(rest) and item_id:
            reply.count_queued(1)
            self._queue.put_nowait(_Chunk(reply, item_id, rest))

    def end(self, reply: S2SReply) -> None:
        """``done(reply)`` once everything of it queued so far was played."""
        self._queue.put_nowait(_End(reply))

    def drop_queued(self) -> None:
        """Forget every queued frame (a barge-in: the loop is restarted and the output flushed)."""
        while not self._queue.empty():
            self._queue.get_nowait()

    async def wait_played(self, reply: S2SReply) -> None:
        """Until everything of ``reply`` received so far was played (or it was stopped)."""
        if self._current() is reply:
            await reply.drained.wait()
        end = reply.played_until(self._output.sample_rate)
        if end is not None:
            await _sleep_until(end)

    async def play(self) -> None:
        """Write the provider's audio to the output on the playout clock, and note what was written when."""
        rate = self._output.sample_rate
        next_t: float | None = None
        last: S2SReply | None = None
        while True:
            entry = await self._queue.get()
            reply = entry.reply
            if reply is not last:  # each reply starts on its own clock: a gap between two is no underrun
                next_t, last = None, reply
            if isinstance(entry, _End):
                if next_t is not None:
                    await _sleep_until(next_t)
                reply.audio_done_at = next_t if next_t is not None else now()
                next_t = last = None
                if self._current() is reply:
                    self._done(reply)
                continue
            try:
                if reply is not self._current():
                    continue
                t = now()
                if next_t is None:
                    next_t = t
                elif t > next_t + self._tolerance_s:
                    gap = round((t - next_t) * 1000, 1)
                    self._emit(EventType.AUDIO_UNDERRUN, reply_id=reply.id, gap_ms=gap)
                    next_t = t
                await _sleep_until(next_t - self._lead_s)
                if reply is not self._current():
                    continue
                if reply.first_audio_at is None:
                    reply.first_audio_at = next_t
                    self._started(reply)
                await self._output.write(AudioFrame(entry.pcm, rate, next_t))
                reply.item(entry.item_id).written.append(PlayedFrame(next_t, len(entry.pcm)))
                next_t += len(entry.pcm) / rate
            finally:
                reply.count_queued(-1)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - now()
    if delay > 0:
        await asyncio.sleep(delay)
