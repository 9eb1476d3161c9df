"""The one-thread-per-model worker: urgent work first, abandoned work never run."""

from __future__ import annotations

import asyncio
import threading

import pytest

from parley.providers.serial_worker import BACKGROUND, URGENT, SerialWorker


@pytest.fixture
def worker() -> SerialWorker:
    return SerialWorker("test-worker")


async def occupy(worker: SerialWorker) -> threading.Event:
    """Keep the thread busy until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        release.wait(5)

    worker.submit(block)
    await asyncio.to_thread(started.wait, 5)
    return release


async def test_urgent_jobs_overtake_background_ones(worker: SerialWorker) -> None:
    release = await occupy(worker)
    order: list[str] = []
    interim = worker.submit(lambda: order.append("interim"), BACKGROUND)
    final = worker.submit(lambda: order.append("final"), URGENT)
    release.set()
    await asyncio.gather(interim.future, final.future)
    assert order == ["final", "interim"]
    worker.close()


async def test_a_job_cancelled_before_it_starts_never_runs(worker: SerialWorker) -> None:
    release = await occupy(worker)
    ran: list[int] = []

    def record() -> int:
        ran.append(1)
        return 1

    job = worker.submit(record)
    job.cancel()
    release.set()
    assert await job.future is None
    assert ran == []
    worker.close()


async def test_long_background_work_sees_urgent_work_waiting_until_it_is_taken_up(
    worker: SerialWorker,
) -> None:
    # A read-ahead checks this between its batches, and stops for a reply.
    release = await occupy(worker)  # occupy() submits URGENT work: it is taken up already
    assert not worker.urgent_waiting
    worker.submit(lambda: None, BACKGROUND)
    assert not worker.urgent_waiting
    dropped = worker.submit(lambda: None, URGENT)
    reply = worker.submit(lambda: None, URGENT)
    assert worker.urgent_waiting
    dropped.cancel()  # skipped unrun, but taken up all the same
    release.set()
    await reply.future
    assert not worker.urgent_waiting
    worker.close()


async def test_cancelling_the_caller_drops_its_queued_job(worker: SerialWorker) -> None:
    release = await occupy(worker)
    ran: list[int] = []
    caller = asyncio.create_task(worker.run(lambda: ran.append(1)))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    release.set()
    assert await worker.run(lambda: 42) == 42  # the queue moved on past the dropped job
    assert ran == []
    worker.close()


async def test_errors_reach_the_caller(worker: SerialWorker) -> None:
    def fail() -> None:
        raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        await worker.run(fail)
    assert await worker.run(lambda: "still alive") == "still alive"
    worker.close()


async def test_all_jobs_run_on_one_thread_and_close_finishes_queued_work(worker: SerialWorker) -> None:
    threads = await asyncio.gather(*(worker.run(threading.get_ident) for _ in range(5)))
    assert len(set(threads)) == 1 and threads[0] != threading.get_ident()
    release = await occupy(worker)
    queued = worker.submit(lambda: "done")
    worker.close()
    release.set()
    assert await queued.future == "done"
    assert await worker.run(lambda: "restarted") == "restarted"
    worker.close()


async def test_aclose_returns_once_the_thread_has_finished_its_work(worker: SerialWorker) -> None:
    release = await occupy(worker)
    queued = worker.submit(lambda: threading.current_thread())
    closing = asyncio.create_task(worker.aclose())
    await asyncio.sleep(0.05)
    assert not closing.done(), "a job is still running on the thread"
    release.set()
    await closing
    thread = await queued.future
    assert not thread.is_alive()
