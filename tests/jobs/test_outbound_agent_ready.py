"""The outbound queue makes each attempt's agent ready before it asks the carrier for the call: nobody is
dialed while the agent warms, an agent that cannot be made ready in time fails the attempt undialed, and a
job canceled while its agent warmed is not dialed either."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from parley.engine.agent import AgentConfig
from parley.jobs.outbound import OutboundQueue
from parley.platform.runtime import Platform
from tests.jobs.test_outbound import LONDON, NOON, FakeDialer, _open, _settings, calls_of


@pytest.fixture
async def platform(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Platform]:
    path = tmp_path / "parley.db"
    shutil.copyfile(sqlite_template, path)
    opened = await _open(_settings(tmp_path, f"sqlite+aiosqlite:///{path}"))
    yield opened
    await opened.close()


class Warmer:
    """The server's warm-up of an agent, held until ``release`` (or failing with ``error``)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.asked: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.error = error

    async def __call__(self, org_id: str, agent: AgentConfig) -> None:
        self.asked.append((org_id, agent.name))
        await self.release.wait()
        if self.error is not None:
            raise self.error


async def asked(warmer: Warmer) -> None:
    async with asyncio.timeout(5):
        while not warmer.asked:  # noqa: ASYNC110  (the dispatcher runs in the background)
            await asyncio.sleep(0.01)


async def test_nobody_is_dialed_until_the_jobs_agent_is_ready(platform: Platform) -> None:
    dialer, warmer = FakeDialer(), Warmer()
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0])
    dispatching = asyncio.create_task(queue.dispatch_once(at=NOON))
    await asked(warmer)
    await asyncio.sleep(0.2)
    assert dialer.placed == [], "dialed while the agent was still warming"
    assert warmer.asked == [(platform.default_org_id, "sales")]
    warmer.release.set()
    assert await dispatching == 1
    assert dialer.numbers == [LONDON[0]]
    assert (await queue.get(platform.default_org_id, job.id)).status == "dialing"


async def test_an_agent_not_ready_in_time_fails_the_attempt_undialed_and_it_is_retried(
    platform: Platform,
) -> None:
    dialer, warmer = FakeDialer(), Warmer()  # never released
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer, warm_limit_s=0.2)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0])
    assert await queue.dispatch_once(at=NOON) == 1
    assert dialer.placed == []
    view = await queue.get(platform.default_org_id, job.id)
    assert (view.status, view.last_outcome, view.attempts) == ("pending", "failed:agent_not_ready", 1)
    [call] = await calls_of(platform, job.id)
    assert (call.status, call.end_reason, call.provider_call_id) == ("failed", "agent_not_ready", None)


async def test_models_that_fail_to_load_fail_the_attempt_undialed(platform: Platform) -> None:
    dialer, warmer = FakeDialer(), Warmer(RuntimeError("no such voice"))
    warmer.release.set()
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0], max_attempts=1)
    assert await queue.dispatch_once(at=NOON) == 1
    assert dialer.placed == []
    view = await queue.get(platform.default_org_id, job.id)
    assert (view.status, view.last_outcome) == ("exhausted", "failed:agent_not_ready")


async def test_a_job_canceled_while_its_agent_warmed_is_not_dialed(platform: Platform) -> None:
    dialer, warmer = FakeDialer(), Warmer()
    queue = OutboundQueue(platform, platform.settings, dialer, warm=warmer)
    org = platform.default_org_id
    job = await queue.enqueue(org, agent_ref="sales", to=LONDON[0])
    dispatching = asyncio.create_task(queue.dispatch_once(at=NOON))
    await asked(warmer)
    assert (await queue.cancel(org, job.id)).cancel_requested
    warmer.release.set()
    assert await dispatching == 1
    assert dialer.placed == [], "the job was canceled before its call was placed"
    view = await queue.get(org, job.id)
    assert view.status == "canceled"
    [call] = await calls_of(platform, job.id)
    assert (call.status, call.end_reason) == ("canceled", "job_canceled")
