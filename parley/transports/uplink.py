"""The inbound half of a network transport: stamping audio on the server's clock, and flood limits."""

from __future__ import annotations

from parley.engine.events import now


class InboundClock:
    """Gives a live stream of frames contiguous timestamps on the server's monotonic clock.

    A frame is stamped where the previous one ended, so network jitter does not smear the timeline
    the endpointer and latency figures use; when that drifts more than ``max_drift_s`` from the arrival
    time (a stall, a reconnect, a client sending too fast) the clock resynchronises to arrival.
    """

    def __init__(self, max_drift_s: float = 0.25) -> None:
        self.max_drift_s = max_drift_s
        self._next: float | None = None
        self.resyncs = 0

    def stamp(self, duration: float, arrival: float | None = None) -> float:
        """Timestamp of the first sample of a frame of ``duration`` seconds that arrived just now."""
        start = (now() if arrival is None else arrival) - duration
        if self._next is None or abs(self._next - start) > self.max_drift_s:
            if self._next is not None:
                self.resyncs += 1
            self._next = start
        stamped = self._next
        self._next += duration
        return stamped

    def reset(self) -> None:
        self._next = None


class TokenBucket:
    """``rate`` units per second with bursts up to ``burst``; ``take`` says whether a cost fits."""

    def __init__(self, rate: float, burst: float) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now()

    def take(self, cost: float = 1.0, at: float | None = None) -> bool:
        t = now() if at is None else at
        self._tokens = min(self.burst, self._tokens + (t - self._at) * self.rate)
        self._at = t
        if cost > self._tokens:
            return False
        self._tokens -= cost
        return True
