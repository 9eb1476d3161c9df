"""The timeline on Redis Streams, for many worker processes.

Every event goes to one stream shared by all sessions (read by consumer groups: XREADGROUP, XACK, and
XAUTOCLAIM of entries a dead consumer left unacknowledged) and to a stream per session (read by live
feeds, replayable from any sequence number because its entry ids are ``<seq>-0``). Emitting only queues
the event; a background task sends whatever has queued in one pipelined round trip, so a burst of events
costs one round trip, and a failed send is retried (the per-session stream rejects the repeats by id;
consumers of the shared stream deduplicate on ``(session, seq)``).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from parley.engine.events import Event
from parley.timeline.bus import FINAL_EVENT, Sequencer
from parley.timeline.envelope import Envelope

log = structlog.get_logger("parley.timeline")


class RedisTimeline:
    def __init__(
        self,
        client: Redis,
        *,
        stream: str = "parley:timeline",
        maxlen: int = 1_000_000,
        session_ttl_s: int = 7 * 86400,
        batch: int = 500,
        retry_s: float = 0.5,
    ) -> None:
        self.client = client
        self.stream = stream
        self._maxlen = maxlen
        self._ttl = session_ttl_s
        self._batch = batch
        self._retry_s = retry_s
        self._sequencer = Sequencer()
        self._outbox: deque[Envelope] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._flusher: asyncio.Task[None] | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisTimeline:
        return cls(Redis.from_url(url, decode_responses=True), **options)

    def session_key(self, session_id: str) -> str:
        return f"{self.stream}:session:{session_id}"

    def emit(self, event: Event) -> None:
        self._outbox.append(self._sequencer.stamp(event))
        self._idle.clear()
        self._wakeup.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop(), name="timeline-flush")

    async def flush(self) -> None:
        await self._idle.wait()

    async def _flush_loop(self) -> None:
        failures = 0
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._outbox:
                batch = [self._outbox[i] for i in range(min(self._batch, len(self._outbox)))]
                try:
                    await self._send(batch)
                except (RedisError, OSError) as exc:
                    failures += 1
                    if failures in (1, 10) or failures % 100 == 0:
                        log.warning(
                            "timeline send to Redis failed, retrying",
                            failures=failures,
                            events=len(batch),
                            error=repr(exc),
                        )
                    await asyncio.sleep(self._retry_s)
                    continue
                failures = 0
                for _ in batch:
                    self._outbox.popleft()
            self._idle.set()

    async def _send(self, batch: Sequence[Envelope]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for envelope in batch:
            payload = {"e": envelope.dumps()}
            pipe.xadd(self.stream, payload, maxlen=self._maxlen, approximate=True)  # type: ignore[arg-type]
            pipe.xadd(self.session_key(envelope.session_id), payload, id=f"{envelope.seq}-0")  # type: ignore[arg-type]
        for session_id in {e.session_id for e in batch}:
            pipe.expire(self.session_key(session_id), self._ttl)
        for result in await pipe.execute(raise_on_error=False):
            if isinstance(result, ResponseError) and "equal or smaller" not in str(result):
                raise result  # "equal or smaller" is a retried entry the session stream already has

    def consumer(self, group: str, name: str, *, claim_idle_s: float = 30.0) -> RedisConsumer:
        return RedisConsumer(self, group, name, claim_idle_s)

    async def follow(self, session_id: str, after_seq: int = 0) -> AsyncIterator[Envelope]:
        key, last = self.session_key(session_id), f"{max(0, after_seq)}-0"
        while True:
            response: Any = await self.client.xread({key: last}, count=200, block=5000)
            for _stream, entries in response or []:
                for ident, fields in entries:
                    last = ident
                    envelope = Envelope.loads(fields["e"], ident)
                    yield envelope
                    if envelope.type == FINAL_EVENT:
                        return

    async def close(self) -> None:
        if self._outbox:
            try:
                await asyncio.wait_for(self.flush(), 5.0)
            except TimeoutError:
                log.error("timeline events not sent to Redis", events=len(self._outbox))
        if self._flusher is not None:
            self._flusher.cancel()
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.client.aclose()


def _raise_if_cancelled() -> None:
    """redis-py (8.1, Python 3.11) can lose a cancellation that lands while a blocking read is
    parked, and return normally; a consumer loop would then never stop. Honour it here."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class RedisConsumer:
    def __init__(self, bus: RedisTimeline, group: str, name: str, claim_idle_s: float) -> None:
        self._bus = bus
        self._group = group
        self._name = name
        self._claim_idle_ms = int(claim_idle_s * 1000)
        self._created = False
        self._backlog = True
        self._next_claim = 0.0

    async def _ensure_group(self) -> None:
        if self._created:
            return
        try:
            await self._bus.client.xgroup_create(self._bus.stream, self._group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._created = True

    async def read(self, count: int = 100, block_s: float = 1.0) -> list[Envelope]:
        try:
            return await self._read(count, block_s)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis restarted without its data (or the stream was deleted): the group is made again,
            # from the first entry still there, and this consumer starts over.
            log.warning("timeline consumer group was gone; creating it again", group=self._group)
            self._created, self._backlog = False, True
            return await self._read(count, block_s)

    async def _read(self, count: int, block_s: float) -> list[Envelope]:
        await self._ensure_group()
        client, stream = self._bus.client, self._bus.stream
        if self._backlog:  # what this consumer took before a crash and never acknowledged
            entries = await self._parse(
                await client.xreadgroup(self._group, self._name, {stream: "0"}, count=count)
            )
            if entries:
                return entries
            self._backlog = False
        if time.monotonic() >= self._next_claim:  # what other, dead consumers left behind
            self._next_claim = time.monotonic() + self._claim_idle_ms / 2000
            claimed = await client.xautoclaim(
                stream, self._group, self._name, self._claim_idle_ms, "0-0", count
            )
            entries = await self._parse([[stream, claimed[1]]])
            if entries:
                return entries
        block = int(block_s * 1000)
        response = await client.xreadgroup(
            self._group, self._name, {stream: ">"}, count=count, block=block if block > 0 else None
        )
        _raise_if_cancelled()
        return await self._parse(response)

    async def _parse(self, response: Any) -> list[Envelope]:
        envelopes: list[Envelope] = []
        trimmed: list[str] = []
        for _stream, entries in response or []:
            for ident, fields in entries:
                if not fields or "e" not in fields:
                    trimmed.append(ident)  # trimmed away before it was read: nothing left to deliver
                    continue
                envelopes.append(Envelope.loads(fields["e"], ident))
        if trimmed:
            await self._bus.client.xack(self._bus.stream, self._group, *trimmed)
        return envelopes

    async def ack(self, envelopes: Sequence[Envelope]) -> None:
        if envelopes:
            await self._bus.client.xack(self._bus.stream, self._group, *[e.id for e in envelopes])
