"""The outbound half of a network transport: an ``AudioOutput`` whose listener can drop and come back.

While no peer is attached, ``write`` waits: the reply's playout clock stops with the listener, so the
context keeps only what was heard and a side-effect tool (hang up) waits until its words were played.
Frames are numbered; the last ones sent are kept so a peer that reconnects gets exactly the frames it
missed, once, and never the ones it already has.
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
        self.last_hold_end: float | None = None
        """When the last write that waited for a peer went out: the engine reports that gap as an
        underrun, but the listener was away, not starved."""

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
        if self._peer is None:
            self.holds += 1
            while self._peer is None:
                await self._attached.wait()
            self.last_hold_end = now()
        seq = self._next_seq
        self._next_seq += 1
        self._recent.append((seq, frame))
        self.frames_sent += 1
        await self._peer.send_audio(seq, frame)

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
