"""A bad phone network between the simulated caller and Parley, reproducible from a seed.

The impairments apply to the caller's outgoing ``media`` packets only: that is the audio a real
carrier leg loses, duplicates and reorders before Twilio forwards it. Every packet draws the same four
random numbers whatever happens to it, so one seed gives one run, and changing one probability does not
shift the decisions the others make.

Media Streams ride one TCP connection, which delivers in order: a packet held up by jitter holds up
the packets behind it (head-of-line blocking) instead of being overtaken, so jitter bunches packets
but never reorders them. Reordering is its own knob (a packet swaps places with the next one).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class NetworkProfile:
    """How bad the caller's network is; the defaults are a perfect line."""

    loss: float = 0.0
    """Probability a media packet is dropped."""
    duplicate: float = 0.0
    """Probability a media packet is sent twice."""
    reorder: float = 0.0
    """Probability a media packet swaps places with the next one."""
    jitter_ms: float = 0.0
    """Each send is delayed by a uniform 0..jitter_ms past its due time."""
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability (0..1), got {value}")
        if not 0.0 <= self.jitter_ms <= 2000.0:
            raise ValueError(f"jitter_ms must be within 0..2000, got {self.jitter_ms}")

    @property
    def ideal(self) -> bool:
        return self.loss == 0 and self.duplicate == 0 and self.reorder == 0 and self.jitter_ms == 0


@dataclass(slots=True)
class NetworkStats:
    """What the network did, so a test can check what the far end should have seen."""

    offered: int = 0
    """Packets the caller produced."""
    sent: int = 0
    """Packets put on the wire, duplicates included."""
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    """Swaps of neighbours that actually happened (a held packet whose successor was lost is not one)."""
    max_delay_s: float = 0.0
    """Longest a packet waited past its due time (jitter, head-of-line blocking and reorder holds)."""


@dataclass(frozen=True, slots=True)
class Scheduled(Generic[T]):
    send_at: float
    """When to put ``packet`` on the wire (same clock as the ``due`` it was pushed with)."""
    packet: T


class ImpairedLink(Generic[T]):
    """Turns packets due at times into packets to send at times, in wire order.

    Pure and synchronous: the caller pushes each packet at its due time and sends what comes back,
    sleeping until each ``send_at``; a pushed packet may come back now, later (reorder) or never (loss).
    """

    def __init__(self, profile: NetworkProfile | None = None) -> None:
        self.profile = profile or NetworkProfile()
        self.stats = NetworkStats()
        self._rng = random.Random(self.profile.seed)
        self._held: list[tuple[float, T]] = []
        self._last_send = float("-inf")

    def push(self, packet: T, due: float) -> list[Scheduled[T]]:
        p = self.profile
        self.stats.offered += 1
        lose, duplicate, reorder, jitter = (self._rng.random() for _ in range(4))
        if lose < p.loss:
            self.stats.lost += 1
            return self.flush(due)
        copies = 2 if duplicate < p.duplicate else 1
        if copies == 2:
            self.stats.duplicated += 1
        send_at = max(self._last_send, due + jitter * p.jitter_ms / 1000)
        if not self._held and reorder < p.reorder:
            self._held = [(due, packet)] * copies
            return []
        out = [self._emit(send_at, due, packet) for _ in range(copies)]
        if self._held:
            self.stats.reordered += 1
            out += self.flush(send_at)
        return out

    def flush(self, now: float) -> list[Scheduled[T]]:
        """Release a packet held for reordering (its successor was lost, or the stream ends)."""
        held, self._held = self._held, []
        return [self._emit(max(self._last_send, now), due, packet) for due, packet in held]

    def _emit(self, send_at: float, due: float, packet: T) -> Scheduled[T]:
        self._last_send = send_at
        self.stats.sent += 1
        self.stats.max_delay_s = max(self.stats.max_delay_s, send_at - due)
        return Scheduled(send_at, packet)
