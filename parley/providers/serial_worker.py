"""A single thread that runs one model's blocking calls for every session sharing that model.

On a 2-core machine two inferences at once each run at half speed, so a model gets exactly one thread and
a queue. Jobs carry a priority (a final transcript is on the latency path, an interim guess is not), and a
job cancelled before it starts is skipped instead of occupying the thread for nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import queue
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

URGENT = 0
"""Priority of work someone is waiting on right now (a final transcript, the next audio chunk)."""
BACKGROUND = 10
"""Priority of work that only improves things (an interim guess, a warm-up)."""


@dataclass(eq=False)
class Job(Generic[T]):
    call: Callable[[], T]
    future: asyncio.Future[T | None]
    loop: asyncio.AbstractEventLoop
    cancelled: bool = field(default=False)
    """Set from the event loop. A job not started yet is then skipped and its future resolves to None."""
    urgent: bool = field(default=False)
    started: bool = field(default=False)
    """Set by the worker thread as it begins the job (from then on, cancelling it changes nothing)."""

    def cancel(self) -> None:
        self.cancelled = True


class SerialWorker:
    """One daemon thread running jobs by priority, then in submission order."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._queue: _Queue = queue.PriorityQueue()
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._urgent = 0
        """URGENT jobs submitted and not yet taken up by the thread (run or skipped)."""

    def submit(self, call: Callable[[], T], priority: int = URGENT) -> Job[T]:
        """Queue ``call``; await ``job.future`` for its result. Must be called on the event loop."""
        loop = asyncio.get_running_loop()
        job: Job[T] = Job(call, loop.create_future(), loop)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_serve, args=(self._queue, self._taken), name=self._name, daemon=True
                )
                self._thread.start()
            if priority == URGENT:
                self._urgent += 1
                job.urgent = True
            self._queue.put((priority, next(self._order), job))  # type: ignore[arg-type]
        return job

    @property
    def urgent_waiting(self) -> bool:
        """Whether an URGENT job is queued: long BACKGROUND work checks this to stop early."""
        return self._urgent > 0

    def _taken(self, job: Job[object]) -> None:
        if job.urgent:
            with self._lock:
                self._urgent -= 1

    async def run(self, call: Callable[[], T], priority: int = URGENT) -> T:
        """Run ``call`` on the worker thread; if the caller is cancelled first, it never starts."""
        job = self.submit(call, priority)
        try:
            result = await job.future
        except asyncio.CancelledError:
            job.cancel()
            raise
        return result  # type: ignore[return-value]  # None only for jobs cancelled, which raised above

    def close(self) -> threading.Thread | None:
        """Let the thread finish queued jobs and exit; a later submit starts a new one. Returns the
        thread that is finishing (join it before the process exits: native code still running on a
        daemon thread at interpreter shutdown can abort the process)."""
        with self._lock:
            thread = self._thread
            if thread is not None:
                self._queue.put((sys.maxsize, 0, None))  # after everything already queued
                self._queue = queue.PriorityQueue()
                self._thread = None
        return thread

    async def aclose(self) -> None:
        """``close``, then wait (off the loop) until the thread is done."""
        thread = self.close()
        if thread is not None:
            await asyncio.to_thread(thread.join)


_Queue = queue.PriorityQueue[tuple[int, int, Job[object] | None]]


def _serve(jobs: _Queue, taken: Callable[[Job[object]], None]) -> None:
    while (job := jobs.get()[2]) is not None:
        taken(job)
        outcome: object = None
        if not job.cancelled:
            job.started = True
            try:
                outcome = job.call()
            except Exception as exc:
                outcome = exc
        with contextlib.suppress(RuntimeError):  # the asking loop is closed: nobody is waiting
            job.loop.call_soon_threadsafe(_settle, job.future, outcome)


def _settle(future: asyncio.Future[object], outcome: object) -> None:
    if future.done():
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
