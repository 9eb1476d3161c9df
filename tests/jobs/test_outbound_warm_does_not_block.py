"""One agent that is slow to warm delays only its own calls: while an attempt waits for its agent, the
running queue goes on dialing other due jobs whose agents are ready. The wait still ends the attempt
undialed (``agent_not_ready``) after the limit, the queue still runs no more than its bound of attempts
at once, and its own recovery does not take an attempt still waiting for its agent for abandoned."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from parley.engine.agent import AgentConfig
from parley.jobs.outbound import OutboundQueue
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.store.types import utcnow
from tests.jobs.test_outbound import LONDON, FakeDialer, _open, _settings, calls_of

ALL_DAY = "00:00-24:00"
"""``run`` dispatches at the real time of day: calling hours that are always open."""
WAIT_S = 30.0
"""What a test waits for something the queue does at once: generous, for a loaded machine."""


@pytest.fixture
async def platform(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Platform]:
    path = tmp_path / "parley.db"
    shutil.copyfile(sqlite_template, path)
    opened = await _open(_settings(tmp_path, f"sqlite+aiosqlite:///{path}"))
    await opened.agents.create(opened.default_org_id, AgentCreate(name="slow"))
    yield opened
    await opened.close()


class SlowAgentWarmer:
    """The server's warm-up: agent ``slow`` is ready only once ``release`` is set; the others at once."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.slow_asked = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self, org_id: str, agent: AgentConfig) -> None:
        if agent.name != "slow":
            return
        self.slow_asked.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


async def stop(runner: asyncio.Task[None]) -> None:
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner


async def test_a_ready_agents_call_is_dialed_while_another_jobs_agent_still_warms(
    platform: Platform,
) -> None:
    dialer, warmer = FakeDialer(), SlowAgentWarmer()
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer, warm_limit_s=600)
    org = platform.default_org_id
    slow_job = await queue.enqueue(org, agent_ref="slow", to=LONDON[0], window=ALL_DAY)
    runner = asyncio.create_task(queue.run())
    try:
        await asyncio.wait_for(warmer.slow_asked.wait(), WAIT_S)
        ready_job = await queue.enqueue(org, agent_ref="sales", to=LONDON[1], window=ALL_DAY)
        dialed = await asyncio.wait_for(dialer.arrivals.get(), WAIT_S)
        assert dialer.numbers == [LONDON[1]], "only the ready agent's call goes out while the other warms"
        assert (await queue.get(org, ready_job.id)).last_call_id == dialed
        waiting = await queue.get(org, slow_job.id)
        assert waiting.status == "dialing" and waiting.last_outcome is None, "still waiting for its agent"

        warmer.release.set()
        slow_call = await asyncio.wait_for(dialer.arrivals.get(), WAIT_S)
        assert dialer.numbers == [LONDON[1], LONDON[0]]
        assert (await queue.get(org, slow_job.id)).last_call_id == slow_call
    finally:
        await stop(runner)


async def test_an_agent_never_ready_still_fails_its_attempt_undialed_while_others_are_dialed(
    platform: Platform,
) -> None:
    dialer, warmer = FakeDialer(), SlowAgentWarmer()  # never released
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer, warm_limit_s=0.5)
    org = platform.default_org_id
    slow_job = await queue.enqueue(org, agent_ref="slow", to=LONDON[0], window=ALL_DAY, max_attempts=1)
    runner = asyncio.create_task(queue.run())
    try:
        await asyncio.wait_for(warmer.slow_asked.wait(), WAIT_S)
        await queue.enqueue(org, agent_ref="sales", to=LONDON[1], window=ALL_DAY)
        await asyncio.wait_for(dialer.arrivals.get(), WAIT_S)
        async with asyncio.timeout(WAIT_S):
            while (view := await queue.get(org, slow_job.id)).status == "dialing":  # noqa: ASYNC110  (a row)
                await asyncio.sleep(0.05)
    finally:
        await stop(runner)
    assert dialer.numbers == [LONDON[1]], "the agent that never got ready was not dialed"
    assert (view.status, view.last_outcome) == ("exhausted", "failed:agent_not_ready")
    [call] = await calls_of(platform, slow_job.id)
    assert (call.status, call.end_reason, call.provider_call_id) == ("failed", "agent_not_ready", None)


async def test_stopping_the_queue_stops_the_attempts_still_waiting_for_their_agent(
    platform: Platform,
) -> None:
    dialer, warmer = FakeDialer(), SlowAgentWarmer()
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer, warm_limit_s=600)
    await queue.enqueue(platform.default_org_id, agent_ref="slow", to=LONDON[0], window=ALL_DAY)
    runner = asyncio.create_task(queue.run())
    await asyncio.wait_for(warmer.slow_asked.wait(), WAIT_S)
    await stop(runner)
    assert warmer.cancelled.is_set(), "an attempt outlived the queue that ran it"
    warmer.release.set()
    await asyncio.sleep(0.1)
    assert dialer.placed == []


async def test_the_queue_runs_no_more_attempts_at_once_than_its_bound(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("parley.jobs.outbound.MAX_ATTEMPTS_IN_FLIGHT", 1)
    dialer, warmer = FakeDialer(), SlowAgentWarmer()
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer, warm_limit_s=600)
    org = platform.default_org_id
    first = await queue.enqueue(org, agent_ref="slow", to=LONDON[0], window=ALL_DAY)
    second = await queue.enqueue(org, agent_ref="sales", to=LONDON[1], window=ALL_DAY)
    dispatching = asyncio.create_task(queue.dispatch_once())
    await asyncio.wait_for(warmer.slow_asked.wait(), WAIT_S)
    assert await queue.dispatch_once() == 0, "one attempt is under way: the bound is reached"
    assert (await queue.get(org, second.id)).status == "pending"
    warmer.release.set()
    assert await dispatching == 1
    assert await queue.dispatch_once() == 1
    assert dialer.numbers == [LONDON[0], LONDON[1]]
    assert (await queue.get(org, first.id)).status == "dialing"


async def test_recovery_leaves_alone_an_attempt_this_queue_is_still_placing(platform: Platform) -> None:
    dialer, warmer = FakeDialer(), SlowAgentWarmer()
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer, warm_limit_s=600)
    org = platform.default_org_id
    job = await queue.enqueue(org, agent_ref="slow", to=LONDON[0], window=ALL_DAY)
    dispatching = asyncio.create_task(queue.dispatch_once())
    await asyncio.wait_for(warmer.slow_asked.wait(), WAIT_S)
    # Long after the claim: another process's attempt this old would be taken for abandoned.
    assert await queue.recover(at=utcnow() + timedelta(minutes=10)) == 0
    warmer.release.set()
    assert await dispatching == 1
    view = await queue.get(org, job.id)
    assert (view.status, view.last_outcome) == ("dialing", None)
    assert dialer.numbers == [LONDON[0]]
