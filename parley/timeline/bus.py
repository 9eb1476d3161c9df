"""The one interface of every timeline backend.

A bus is a ``TimelineSink`` (sessions emit into it without blocking), a source of consumer groups with
at-least-once delivery (each entry is redelivered until acknowledged, so consumers must tolerate
duplicates: the persister deduplicates on ``(session, seq)``), and a live feed per session that can be
replayed from any sequence number.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from parley.engine.events import Event, EventType
from parley.timeline.envelope import Envelope

FINAL_EVENT = str(EventType.SESSION_ENDED)


class TimelineConsumer(Protocol):
    async def read(self, count: int = 100, block_s: float = 1.0) -> list[Envelope]:
        """Up to ``count`` entries: first the ones this consumer took earlier but never acknowledged,
        then new ones, waiting up to ``block_s`` for any."""
        ...

    async def ack(self, envelopes: Sequence[Envelope]) -> None: ...


class TimelineBus(Protocol):
    def emit(self, event: Event) -> None:
        """Number, stamp and queue an event; never blocks the caller."""
        ...

    async def flush(self) -> None:
        """Return once everything emitted so far has reached the backend."""
        ...

    def consumer(self, group: str, name: str) -> TimelineConsumer: ...

    def follow(self, session_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        """The session's events with ``seq > after_seq``: history first, then live ones as they come."""
        ...

    async def close(self) -> None: ...


class Sequencer:
    """Per-session numbering; a session's counter is dropped when the session ends."""

    def __init__(self) -> None:
        self._next: dict[str, int] = {}

    def stamp(self, event: Event) -> Envelope:
        seq = self._next.get(event.session_id, 0) + 1
        if event.type is EventType.SESSION_ENDED:
            self._next.pop(event.session_id, None)
        else:
            self._next[event.session_id] = seq
        return Envelope.wrap(event, seq)
