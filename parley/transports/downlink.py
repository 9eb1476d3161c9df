"""The outbound half of a network transport: an ``AudioOutput`` whose listener can drop and come back.

While no peer is attached, ``write`` waits: the reply's playout clock stops with the listener, so the
context keeps only what was heard and a side-effect tool (hang up) waits until its words were played.
Such holds are remembered (``held_during``): the engine's clock sees the frame after one as late, but
the listener was away, not starved. Frames are numbered; the last ones sent are kept so a peer that
reconnects gets exactly the frames it missed, once, and never the ones it already has.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

from parley.audio.frame import AudioFrame
from parley.engine.events import now
from parley.engine.transport import ConfirmsPlayout


class Peer(Protocol):
    """Where the downlink delivers: a connection, in order."""

    async def send_audio(self, seq: int, frame: AudioFrame) -> None:
        """Deliver a frame now. May wait while the peer's network buffer is full: the playout then
        holds, as it would for a listener who is not there."""
        ...

    def queue_audio(self, seq: int, frame: AudioFrame) -> None:
        """Queue a frame behind anything already queued, without waiting (resends on reconnect)."""
        ...

    def send_clear(self) -> None:
        """Make the peer drop what it buffered; must not wait."""
        ...


class Downlink:
    """``AudioOutput`` for one session, independent of which connection currently carries it."""

    def __init__(self, sample_rate: int, keep_s: float = 2.0, frame_ms: int = 20) -> None:
        self.sample_rate = sample_rate
        self._peer: Peer | None = None
        self._attached = asyncio.Event()
        self._recent: deque[tuple[int, AudioFrame]] = deque(maxlen=max(1, int(keep_s * 1000 / frame_ms)))
        self._next_seq = 0
        self.frames_sent = 0
        self.clears = 0
        self.holds = 0
        self._held: deque[tuple[float, float]] = deque(maxlen=16)
        """Recent writes that waited for a peer: when each began waiting and when its frame went out
        (after what a reconnect resends ahead of it)."""

    @property
    def attached(self) -> bool:
        return self._peer is not None

    @property
    def last_seq(self) -> int:
        return self._next_seq - 1

    def attach(self, peer: Peer, last_received_seq: int | None = None) -> int:
        """Start delivering to ``peer``; after a reconnect, first resend what it missed. Returns how many."""
        resent = 0
        if last_received_seq is not None:
            for seq, frame in self._recent:
                if seq > last_received_seq:
                    peer.queue_audio(seq, frame)
                    resent += 1
        self._peer = peer
        self._attached.set()
        return resent

    def detach(self, peer: Peer | None = None) -> None:
        """The connection went away (``peer`` given: only if it is still the current one)."""
        if peer is None or peer is self._peer:
            self._peer = None
            self._attached.clear()

    async def write(self, frame: AudioFrame) -> None:
        held_from: float | None = None
        if self._peer is None:
            self.holds += 1
            held_from = now()
            while self._peer is None:
                await self._attached.wait()
        seq = self._next_seq
        self._next_seq += 1
        self._recent.append((seq, frame))
        self.frames_sent += 1
        await self._peer.send_audio(seq, frame)
        if held_from is not None:
            self._held.append((held_from, now()))

    def held_during(self, start: float, end: float) -> float:
        """Seconds of ``start``…``end`` (the monotonic clock) during which a write waited for a peer
        (at most the span: two writers may have waited at once)."""
        held = sum(max(0.0, min(end, until) - max(start, since)) for since, until in self._held)
        return min(held, max(0.0, end - start))

    def heard_until(self, cut: float) -> float:
        """What the current peer confirmed its listener heard (phone lines echo marks); else ``cut``."""
        peer = self._peer
        return peer.heard_until(cut) if isinstance(peer, ConfirmsPlayout) else cut

    async def clear(self) -> None:
        """Barge-in: the peer drops what it buffered, and nothing cut here is ever sent again."""
        self.clears += 1
        self._recent.clear()
        if self._peer is not None:
            self._peer.send_clear()
