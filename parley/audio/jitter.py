"""Adaptive jitter buffer for packetized audio (RTP-like sequence numbers, one fixed-size frame per packet).

The network side calls ``put`` whenever a packet arrives; the playout side calls ``get`` once per frame
tick and always gets a frame back: the right one, a faded repeat of the last one, or silence.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from parley.audio.energy import rms_dbfs
from parley.audio.frame import PCM16

_SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15


@dataclass(frozen=True, slots=True)
class JitterStats:
    received: int
    played: int
    late: int
    """Arrived after their slot had been played or skipped; dropped."""
    duplicates: int
    lost: int
    """Slots skipped because their packet was missing while later ones were there."""
    underruns: int
    """Times the buffer ran dry and playout paused to refill."""
    concealed: int
    """Frames made up by repeating the last frame with a fade."""
    dropped: int
    """Frames thrown away to bring latency back down (overflow, or quiet frames above target)."""
    depth: int
    target_depth: int
    jitter: float
    """Spread of packet arrival delays over the recent window, in seconds."""


class JitterBuffer:
    """Reorders, de-duplicates and paces packets; grows its depth on jitter, shrinks it slowly when calm.

    ``timestamp`` given to ``put`` is the packet's monotonic arrival time. With it, the buffer measures
    how far arrivals stray from a steady clock and sizes itself ahead of trouble; without it, it only
    learns from underruns.
    """

    def __init__(
        self,
        frame_samples: int,
        sample_rate: int,
        *,
        initial_depth: int = 3,
        min_depth: int = 2,
        max_depth: int = 25,
        conceal_frames: int = 2,
        shrink_after_s: float = 5.0,
        jitter_window: int = 100,
        quiet_dbfs: float = -50.0,
    ) -> None:
        if not 1 <= min_depth <= initial_depth <= max_depth:
            raise ValueError(
                f"need 1 <= min_depth <= initial_depth <= max_depth, got {min_depth}, "
                f"{initial_depth}, {max_depth}"
            )
        if frame_samples <= 0 or sample_rate <= 0:
            raise ValueError("frame_samples and sample_rate must be positive")
        self.frame_samples = frame_samples
        self.sample_rate = sample_rate
        self.frame_duration = frame_samples / sample_rate
        self.initial_depth = initial_depth
        self.min_depth = min_depth
        self.max_depth = max_depth
        self.conceal_frames = conceal_frames
        self.quiet_dbfs = quiet_dbfs
        self._shrink_ticks = max(1, round(shrink_after_s / self.frame_duration))
        self._jitter_window = jitter_window
        self._silence = np.zeros(frame_samples, dtype=np.int16)
        self.reset()

    def reset(self) -> None:
        self._frames: dict[int, PCM16] = {}
        self._highest: int | None = None
        self._next: int | None = None
        self._buffering = True
        self._waited = 0
        self._last: PCM16 | None = None
        self._missing_run = 0
        self._transits: deque[float] = deque(maxlen=self._jitter_window)
        self._jitter = 0.0
        self._target = self.initial_depth
        self._calm_ticks = 0
        self._counts = dict.fromkeys(
            ("received", "played", "late", "duplicates", "lost", "underruns", "concealed", "dropped"), 0
        )

    @property
    def stats(self) -> JitterStats:
        return JitterStats(
            **self._counts, depth=len(self._frames), target_depth=self._target, jitter=self._jitter
        )

    @property
    def target_depth(self) -> int:
        return self._target

    @property
    def latency(self) -> float:
        """Seconds of audio waiting in the buffer."""
        return len(self._frames) * self.frame_duration

    def put(self, seq: int, payload: PCM16, timestamp: float | None = None) -> bool:
        """Store one packet; returns False when it was dropped as late or duplicate."""
        if not 0 <= seq < _SEQ_MOD:
            raise ValueError(f"sequence numbers are 16-bit, got {seq}")
        if payload.dtype != np.int16 or payload.shape != (self.frame_samples,):
            raise ValueError(
                f"payload must be {self.frame_samples} int16 samples, got {payload.dtype} "
                f"with shape {payload.shape}"
            )
        ext = self._unwrap(seq)
        self._counts["received"] += 1
        if timestamp is not None:
            self._observe_arrival(ext, timestamp)
        if self._next is not None and ext < self._next:
            self._counts["late"] += 1
            return False
        if ext in self._frames:
            self._counts["duplicates"] += 1
            return False
        self._frames[ext] = payload.copy()  # transports may reuse their receive buffers
        self._limit_latency()
        return True

    def get(self) -> PCM16:
        """The frame for this tick; never blocks, always ``frame_samples`` long."""
        self._adapt_on_tick()
        if self._buffering:
            # Start once the target depth is there, or once the first packet has waited that long: counting
            # packets alone would stall (and pile up latency) when the earliest packets are the delayed ones.
            self._waited += 1 if self._frames else 0
            if len(self._frames) < self._target and self._waited < self._target:
                return self._conceal()
            self._buffering = False
            self._waited = 0
            self._next = min(self._frames)
        assert self._next is not None
        frame = self._frames.pop(self._next, None)
        if frame is None:
            if not self._frames:
                # Dry: pause playout and refill to the (now larger) target before resuming.
                self._counts["underruns"] += 1
                self._target = min(self.max_depth, self._target + 1)
                self._calm_ticks = 0
                self._buffering = True
                return self._conceal()
            self._counts["lost"] += 1
            self._next += 1
            return self._conceal()
        self._next += 1
        too_deep = len(self._frames) > self._target and self._next in self._frames
        if too_deep and rms_dbfs(frame) < self.quiet_dbfs:
            # Deeper than needed (the target shrank): skip a quiet frame, where nobody hears a gap.
            self._counts["dropped"] += 1
            frame = self._frames.pop(self._next)
            self._next += 1
        self._counts["played"] += 1
        self._last = frame
        self._missing_run = 0
        return frame

    @property
    def next_seq(self) -> int | None:
        """The (unwrapped) sequence number of the frame due next, once known: ``pop_ready`` hands on
        consecutive numbers from it."""
        if self._next is None and self._frames:
            return min(self._frames)
        return self._next

    def pop_ready(self, wait_frames: int = 2) -> list[PCM16]:
        """The frames that can go on now, in order, for a consumer with a clock of its own (a recogniser
        stamps frames as they come; only a loudspeaker needs ``get``'s steady playout, which costs the
        buffer's depth in latency). A missing frame is waited for until ``wait_frames`` later ones have
        arrived (a reordered packet comes within that), then concealed and counted lost."""
        ready: list[PCM16] = []
        if self._next is None:
            if not self._frames:
                return ready
            self._next = min(self._frames)
        while self._frames:
            frame = self._frames.pop(self._next, None)
            if frame is None:
                if len(self._frames) < wait_frames:  # every buffered frame is after the gap
                    break
                self._counts["lost"] += 1
                self._next += 1
                ready.append(self._conceal())
                continue
            self._next += 1
            self._counts["played"] += 1
            self._last = frame
            self._missing_run = 0
            ready.append(frame)
        return ready

    def _unwrap(self, seq: int) -> int:
        """Extend a 16-bit sequence number to the one nearest the highest seen (RFC 3550 style)."""
        if self._highest is None:
            self._highest = seq
            return seq
        delta = (seq - self._highest) % _SEQ_MOD
        if delta >= _SEQ_HALF:
            delta -= _SEQ_MOD
        ext = self._highest + delta
        self._highest = max(self._highest, ext)
        return ext

    def _observe_arrival(self, ext: int, arrival: float) -> None:
        # Transit up to a constant offset: how late this packet is relative to a steady sender clock.
        self._transits.append(arrival - ext * self.frame_duration)
        if len(self._transits) < 2:
            return
        self._jitter = max(self._transits) - min(self._transits)
        needed = self._needed_depth()
        if needed > self._target:
            self._target = needed
            self._calm_ticks = 0

    def _needed_depth(self) -> int:
        frames = math.ceil(self._jitter / self.frame_duration - 1e-9) + 1
        return max(self.min_depth, min(self.max_depth, frames))

    def _adapt_on_tick(self) -> None:
        self._calm_ticks += 1
        if self._calm_ticks >= self._shrink_ticks:
            self._calm_ticks = 0
            if self._target > max(self.min_depth, self._needed_depth()):
                self._target -= 1

    def _limit_latency(self) -> None:
        """Past ``max_depth`` frames of latency, skip ahead so the newest packet is ``target`` frames out."""
        assert self._highest is not None
        base = self._next if self._next is not None else min(self._frames)
        if self._highest - base + 1 <= self.max_depth:
            return
        new_base = self._highest - self._target + 1
        stale = [k for k in self._frames if k < new_base]
        for k in stale:
            del self._frames[k]
        self._counts["dropped"] += len(stale)
        if self._next is not None:
            self._next = new_base

    def _conceal(self) -> PCM16:
        """First missing frames: the last real frame fading out linearly; after that, silence."""
        self._missing_run += 1
        if self._last is None or self._missing_run > self.conceal_frames:
            return self._silence.copy()
        n = self.frame_samples
        total = n * self.conceal_frames
        start = (self._missing_run - 1) * n
        gains = 1.0 - (np.arange(start, start + n, dtype=np.float32) + 1.0) / total
        self._counts["concealed"] += 1
        return (self._last.astype(np.float32) * gains).astype(np.int16)
