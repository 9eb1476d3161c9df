"""The in-process timeline (the default): consumer groups and live feeds inside one process.

Delivery follows the Redis backend's rules, so consumers are written once: a consumer first gets back
what it took and never acknowledged, then new entries. With a journal directory every event is also
appended to a per-session file before it is delivered (see ``journal.py``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from parley.engine.events import Event
from parley.timeline.bus import FINAL_EVENT, Sequencer
from parley.timeline.envelope import Envelope
from parley.timeline.journal import Journal

logger = structlog.get_logger("parley.timeline")


@dataclass(slots=True)
class _Group:
    queue: deque[Envelope] = field(default_factory=deque)
    pending: dict[str, dict[str, Envelope]] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class _SessionLog:
    events: list[Envelope] = field(default_factory=list)
    ended: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class MemoryTimeline:
    def __init__(
        self, journal_dir: Path | None = None, *, journal_group: str = "persister", keep_sessions: int = 256
    ) -> None:
        self.journal = Journal(journal_dir) if journal_dir is not None else None
        self._journal_group = journal_group
        self._keep_sessions = keep_sessions
        self._sequencer = Sequencer()
        self._ids = itertools.count(1)
        self._groups: dict[str, _Group] = {}
        self._sessions: OrderedDict[str, _SessionLog] = OrderedDict()

    def emit(self, event: Event) -> None:
        envelope = self._sequencer.stamp(event).with_id(str(next(self._ids)))
        if self.journal is not None:
            try:
                self.journal.append(envelope)
            except OSError as exc:  # a full disk must not end the call
                logger.error("timeline journal write failed", session_id=envelope.session_id, error=repr(exc))
        log = self._log(envelope.session_id)
        log.events.append(envelope)
        log.ended = log.ended or envelope.type == FINAL_EVENT
        log.changed.set()
        for group in self._groups.values():
            group.queue.append(envelope)
            group.changed.set()

    async def flush(self) -> None:
        return None  # delivery is synchronous

    def consumer(self, group: str, name: str) -> MemoryConsumer:
        return MemoryConsumer(self, self._groups.setdefault(group, _Group()), group, name)

    async def follow(self, session_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        log = self._log(session_id)
        position = max(0, after_seq)
        while True:
            if position < len(log.events):
                envelope = log.events[position]
                position += 1
                yield envelope
                continue
            if log.ended:
                return
            log.changed.clear()
            await log.changed.wait()

    async def close(self) -> None:
        if self.journal is not None:
            self.journal.close()
        for log in self._sessions.values():  # wake followers so they can finish
            log.ended = True
            log.changed.set()

    def _log(self, session_id: str) -> _SessionLog:
        log = self._sessions.get(session_id)
        if log is None:
            log = self._sessions[session_id] = _SessionLog()
            self._evict()
        return log

    def _evict(self) -> None:
        """Forget the oldest ended sessions (their events are in the database by then)."""
        if len(self._sessions) <= self._keep_sessions:
            return
        for session_id, log in list(self._sessions.items()):
            if len(self._sessions) <= self._keep_sessions:
                break
            if log.ended:
                del self._sessions[session_id]
        while len(self._sessions) > 2 * self._keep_sessions:  # followers of sessions that never came
            self._sessions.popitem(last=False)

    def _acked(self, group: str, envelope: Envelope) -> None:
        if self.journal is not None and group == self._journal_group and envelope.type == FINAL_EVENT:
            self.journal.discard(envelope.session_id)


class MemoryConsumer:
    def __init__(self, bus: MemoryTimeline, group: _Group, group_name: str, name: str) -> None:
        self._bus = bus
        self._group = group
        self._group_name = group_name
        self._mine = group.pending.setdefault(name, {})
        self._backlog = True

    async def read(self, count: int = 100, block_s: float = 1.0) -> list[Envelope]:
        if self._backlog:
            if self._mine:
                return list(self._mine.values())[:count]
            self._backlog = False
        group = self._group
        if not group.queue:
            group.changed.clear()
            try:
                await asyncio.wait_for(group.changed.wait(), block_s)
            except TimeoutError:
                return []
        taken: list[Envelope] = []
        while group.queue and len(taken) < count:
            envelope = group.queue.popleft()
            self._mine[envelope.id] = envelope
            taken.append(envelope)
        return taken

    async def ack(self, envelopes: Sequence[Envelope]) -> None:
        for envelope in envelopes:
            if self._mine.pop(envelope.id, None) is not None:
                self._bus._acked(self._group_name, envelope)

    def abandon(self) -> None:
        """Behave as if this consumer died: the next consumer of the same name gets its entries again."""
        self._backlog = True
