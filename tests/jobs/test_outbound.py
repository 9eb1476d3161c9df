"""The outbound queue on a real store with a fake carrier: order, limits, calling hours, retries, crashes.

Times are explicit (``at=``) so nothing sleeps: 2030-01-15 12:00 UTC is midday in London (GMT in winter).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from parley.config import Settings
from parley.jobs.calling_window import CallingWindow
from parley.jobs.job_input import InvalidOutboundJob
from parley.jobs.job_views import OutboundJobView
from parley.jobs.outbound import PUBLIC_URL_REQUIRED, OutboundQueue
from parley.platform.agents import Conflict, NotFound
from parley.platform.phone import SERVER_UNAVAILABLE
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.store.lifecycle import CallStatus
from parley.store.models import AgentVersion, Call
from parley.store.outbound import Caps, OutboundJobRepository
from parley.store.tenants import TenantRepository
from parley.store.types import utcnow
from parley.telephony.number_rules import RefusedNumber

NOON = datetime(2030, 1, 15, 12, 0, tzinfo=UTC)
LONDON = ["+442079460001", "+442079460002", "+442079460003", "+442079460004", "+442079460005"]
NEW_YORK = "+12125550123"
TOLL_FREE = "+18005550199"


class CarrierError(Exception):
    """Shaped like the REST client's error: ``code`` and ``message``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class FakeDialer:
    placed: list[dict[str, Any]] = field(default_factory=list)
    refuse: dict[str, Exception] = field(default_factory=dict)
    hold: asyncio.Event | None = None
    arrivals: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    """Call ids as the carrier is asked for them (to wait on a background dispatcher)."""

    async def place_call(
        self, *, to: str, from_: str, url: str, status_callback: str, amd_callback: str, timeout_s: int
    ) -> str:
        call_id = parse_qs(urlsplit(url).query)["call_id"][0]
        self.placed.append(
            {
                "to": to,
                "from": from_,
                "url": url,
                "status_callback": status_callback,
                "amd_callback": amd_callback,
                "timeout_s": timeout_s,
                "call_id": call_id,
            }
        )
        self.arrivals.put_nowait(call_id)
        if self.hold is not None:
            await self.hold.wait()
        if to in self.refuse:
            raise self.refuse[to]
        return f"CA{len(self.placed):032x}"

    @property
    def numbers(self) -> list[str]:
        return [p["to"] for p in self.placed]

    def last_call(self, to: str) -> str:
        return str([p for p in self.placed if p["to"] == to][-1]["call_id"])


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=url,
        public_url="https://voice.example.com",
        twilio_caller_id="+442079460999",
        outbound_retry_backoff_s=[60.0, 300.0],
    )


async def _open(settings: Settings) -> Platform:
    platform = await Platform.open(settings, consume=False, recover=False)
    await platform.agents.create(platform.default_org_id, AgentCreate(name="sales"))
    return platform


@pytest.fixture
async def platform(sqlite_template: Path, tmp_path: Path) -> AsyncIterator[Platform]:
    path = tmp_path / "parley.db"
    shutil.copyfile(sqlite_template, path)
    opened = await _open(_settings(tmp_path, f"sqlite+aiosqlite:///{path}"))
    yield opened
    await opened.close()


def queue_of(platform: Platform, dialer: FakeDialer, **knobs: Any) -> OutboundQueue:
    return OutboundQueue(platform, platform.settings.model_copy(update=knobs), dialer)


async def end_call(queue: OutboundQueue, call_id: str, status: str, at: datetime) -> OutboundJobView | None:
    """What the status webhook does: the call's final status on the books, then the queue told."""
    if status == "completed":
        await queue.platform.calls.set_status(call_id, CallStatus.IN_PROGRESS)
    await queue.platform.calls.set_status(call_id, status)
    return await queue.outcome(call_id, status, at=at)


async def calls_of(platform: Platform, job_id: str) -> list[Call]:
    async with platform.db.session() as session:
        rows = await session.scalars(select(Call).where(Call.job_id == job_id).order_by(Call.created_at))
        return list(rows.all())


async def test_higher_priority_first_then_oldest_within_the_organizations_limit(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer, outbound_org_concurrency=1)
    org = platform.default_org_id
    low = await queue.enqueue(org, agent_ref="sales", to=LONDON[0])
    first_urgent = await queue.enqueue(org, agent_ref="sales", to=LONDON[1], priority=5)
    second_urgent = await queue.enqueue(org, agent_ref="sales", to=LONDON[2], priority=5)

    order = []
    for step in range(3):
        at = NOON + timedelta(minutes=step)
        assert await queue.dispatch_once(at=at) == 1
        assert await queue.dispatch_once(at=at) == 0, "one call at a time for this organization"
        order.append(dialer.placed[-1]["to"])
        await end_call(queue, dialer.placed[-1]["call_id"], "completed", at)
    assert order == [first_urgent.to_number, second_urgent.to_number, low.to_number]
    assert [(await queue.get(org, j.id)).status for j in (low, first_urgent, second_urgent)] == [
        "completed"
    ] * 3


async def test_an_attempt_is_a_call_row_placed_with_the_callback_urls(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to="+44 20 7946 0001")
    assert (
        job.to_number == LONDON[0] and job.from_number == "+442079460999" and job.time_zone == "Europe/London"
    )

    assert await queue.dispatch_once(at=NOON) == 1
    placed = dialer.placed[0]
    [call] = await calls_of(platform, job.id)
    assert placed == {
        "to": LONDON[0],
        "from": "+442079460999",
        "url": f"https://voice.example.com/twilio/voice?call_id={call.id}",
        "status_callback": f"https://voice.example.com/twilio/status?call_id={call.id}",
        "amd_callback": f"https://voice.example.com/twilio/amd?call_id={call.id}",
        "timeout_s": 30,
        "call_id": call.id,
    }
    assert (call.direction, call.transport, call.status) == ("outbound", "twilio", "queued")
    assert call.provider_call_id == f"CA{1:032x}" and call.to_number == LONDON[0]
    dialing = await queue.get(platform.default_org_id, job.id)
    assert (dialing.status, dialing.attempts, dialing.last_call_id) == ("dialing", 1, call.id)


async def test_the_same_idempotency_key_gives_back_the_same_job(platform: Platform) -> None:
    queue = queue_of(platform, FakeDialer())
    org = platform.default_org_id
    first = await queue.enqueue(org, agent_ref="sales", to=LONDON[0], idempotency_key="lead-42")
    again = await queue.enqueue(org, agent_ref="sales", to=LONDON[1], idempotency_key="lead-42")
    raced = await asyncio.gather(
        *(queue.enqueue(org, agent_ref="sales", to=LONDON[2], idempotency_key="lead-43") for _ in range(5))
    )
    assert again == first and again.to_number == LONDON[0], "the first request wins, unchanged"
    assert len({job.id for job in raced}) == 1
    async with platform.db.session() as session:
        other = await TenantRepository(session).ensure_org("other")
    await platform.agents.create(other.id, AgentCreate(name="sales"))
    elsewhere = await queue.enqueue(other.id, agent_ref="sales", to=LONDON[0], idempotency_key="lead-42")
    assert elsewhere.id != first.id, "keys are per organization"
    assert len((await queue.page(org)).data) == 2


async def test_busy_is_retried_after_the_backoff_and_an_answer_completes_the_job(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    org = platform.default_org_id
    job = await queue.enqueue(org, agent_ref="sales", to=LONDON[0])

    await queue.dispatch_once(at=NOON)
    busy_call = dialer.last_call(LONDON[0])
    retry = await end_call(queue, busy_call, "busy", NOON)
    assert retry is not None
    assert (retry.status, retry.attempts, retry.last_outcome) == ("pending", 1, "busy")
    assert retry.next_attempt_at == NOON + timedelta(seconds=60)

    assert await queue.dispatch_once(at=NOON + timedelta(seconds=59)) == 0, "backing off"
    assert await queue.dispatch_once(at=NOON + timedelta(seconds=60)) == 1
    answered_call = dialer.last_call(LONDON[0])
    assert answered_call != busy_call
    assert await queue.outcome(busy_call, "busy", at=NOON) == await queue.get(org, job.id), "a late repeat"
    assert (await queue.get(org, job.id)).status == "dialing"

    done = await end_call(queue, answered_call, "completed", NOON + timedelta(minutes=3))
    assert done is not None and (done.status, done.attempts, done.last_outcome) == (
        "completed",
        2,
        "completed",
    )
    assert [(c.id, c.status) for c in await calls_of(platform, job.id)] == [
        (busy_call, "busy"),
        (answered_call, "completed"),
    ]
    assert await queue.outcome(answered_call, "completed") == done, "a second outcome changes nothing"


async def test_a_job_is_exhausted_after_its_attempts_and_the_last_backoff_repeats(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer, outbound_retry_backoff_s=[10.0])
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0], max_attempts=3)
    at = NOON
    outcomes = []
    for _ in range(3):
        assert await queue.dispatch_once(at=at) == 1
        view = await end_call(queue, dialer.last_call(LONDON[0]), "no_answer", at)
        assert view is not None
        outcomes.append((view.status, view.attempts))
        at = view.next_attempt_at
    assert outcomes == [("pending", 1), ("pending", 2), ("exhausted", 3)]
    assert await queue.dispatch_once(at=at + timedelta(days=1)) == 0
    assert len(await calls_of(platform, job.id)) == 3


async def test_one_call_at_a_time_to_a_number_while_other_numbers_are_dialed(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    org = platform.default_org_id
    async with platform.db.session() as session:
        other = await TenantRepository(session).ensure_org("other")
    await platform.agents.create(other.id, AgentCreate(name="sales"))
    await queue.enqueue(org, agent_ref="sales", to=LONDON[0])
    await queue.enqueue(other.id, agent_ref="sales", to=LONDON[0])
    await queue.enqueue(org, agent_ref="sales", to=LONDON[1])

    assert await queue.dispatch_once(at=NOON) == 2
    assert sorted(dialer.numbers) == [LONDON[0], LONDON[1]]
    assert await queue.dispatch_once(at=NOON) == 0, "the callee is on the line with the first business"
    await end_call(queue, dialer.last_call(LONDON[0]), "completed", NOON)
    assert await queue.dispatch_once(at=NOON) == 1 and dialer.numbers[-1] == LONDON[0]


async def test_an_organization_dials_no_more_than_its_limit(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer, outbound_org_concurrency=2)
    org = platform.default_org_id
    async with platform.db.session() as session:
        other = await TenantRepository(session).ensure_org("other")
    await platform.agents.create(other.id, AgentCreate(name="sales"))
    busy = [await queue.enqueue(org, agent_ref="sales", to=n) for n in LONDON[:3]]
    theirs = await queue.enqueue(other.id, agent_ref="sales", to=LONDON[3])

    assert await queue.dispatch_once(at=NOON) == 3
    statuses = [(await queue.get(org, j.id)).status for j in busy]
    assert sorted(statuses) == ["dialing", "dialing", "pending"]
    assert (await queue.get(other.id, theirs.id)).status == "dialing", "another organization is not held up"
    ours = next(v for v in [await queue.get(org, j.id) for j in busy] if v.status == "dialing")
    assert ours.last_call_id is not None
    await end_call(queue, ours.last_call_id, "completed", NOON)
    assert await queue.dispatch_once(at=NOON) == 1, "a call ended: the third one goes out"


async def test_calls_wait_for_the_callees_local_calling_hours(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    org = platform.default_org_id
    london = await queue.enqueue(org, agent_ref="sales", to=LONDON[0])
    new_york = await queue.enqueue(org, agent_ref="sales", to=NEW_YORK)
    told = await queue.enqueue(org, agent_ref="sales", to=LONDON[1], time_zone="America/New_York")
    toll_free = await queue.enqueue(org, agent_ref="sales", to=TOLL_FREE)
    assert (london.time_zone, new_york.time_zone, toll_free.time_zone) == (
        "Europe/London",
        "America/New_York",
        "UTC",
    )

    summer_night = datetime(2030, 7, 15, 22, 0, tzinfo=UTC)  # 23:00 in London (BST), 18:00 in New York
    assert await queue.dispatch_once(at=summer_night) == 2
    assert sorted(dialer.numbers) == sorted([NEW_YORK, LONDON[1]])
    waiting = await queue.get(org, london.id)
    assert waiting.status == "pending"
    assert waiting.next_attempt_at == datetime(2030, 7, 16, 8, 0, tzinfo=UTC), "09:00 in London"
    assert (await queue.get(org, toll_free.id)).next_attempt_at == datetime(2030, 7, 16, 9, 0, tzinfo=UTC)

    assert await queue.dispatch_once(at=datetime(2030, 7, 16, 7, 59, tzinfo=UTC)) == 0
    assert await queue.dispatch_once(at=datetime(2030, 7, 16, 8, 0, tzinfo=UTC)) == 1
    assert dialer.numbers[-1] == LONDON[0]
    assert told.window == "09:00-20:00"


def test_calling_windows_may_cross_midnight() -> None:
    night = CallingWindow.parse("20:00-08:00")
    assert night.contains(23 * 60) and night.contains(7 * 60 + 59) and not night.contains(8 * 60)
    all_day = CallingWindow.parse("00:00-24:00")
    assert all(all_day.contains(m) for m in range(0, 1440, 7))
    for bad in ("9-17", "09:00-09:00", "25:00-26:00", "10:00-24:30"):
        with pytest.raises(InvalidOutboundJob):
            CallingWindow.parse(bad)


async def test_cancel_stops_a_pending_job_and_a_dialing_one_once_its_call_ends(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    org = platform.default_org_id
    pending = await queue.enqueue(org, agent_ref="sales", to=LONDON[0], not_before=NOON + timedelta(hours=1))
    live = await queue.enqueue(org, agent_ref="sales", to=LONDON[1])

    assert await queue.dispatch_once(at=NOON) == 1
    assert (await queue.cancel(org, pending.id)).status == "canceled"
    marked = await queue.cancel(org, live.id)
    assert (marked.status, marked.cancel_requested) == ("dialing", True)
    assert marked.last_call_id == dialer.last_call(LONDON[1]), "the caller hangs this call up"
    assert await queue.cancel(org, live.id) == marked

    ended = await end_call(queue, dialer.last_call(LONDON[1]), "completed", NOON)
    assert ended is not None and (ended.status, ended.cancel_requested) == ("canceled", False)
    assert await queue.dispatch_once(at=NOON + timedelta(days=1)) == 0, "nothing is dialed again"
    assert (await queue.cancel(org, pending.id)).status == "canceled", "canceling twice is harmless"
    done = await queue.enqueue(org, agent_ref="sales", to=LONDON[2])
    await queue.dispatch_once(at=NOON + timedelta(days=1))
    await end_call(queue, dialer.last_call(LONDON[2]), "completed", NOON + timedelta(days=1))
    with pytest.raises(Conflict):
        await queue.cancel(org, done.id)
    with pytest.raises(NotFound):
        await queue.cancel(org, "job_nope")


async def test_a_carrier_refusal_is_a_failed_attempt_with_its_code(platform: Platform) -> None:
    dialer = FakeDialer(refuse={LONDON[0]: CarrierError(20429, "Too many requests")})
    queue = queue_of(platform, dialer)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0])

    assert await queue.dispatch_once(at=NOON) == 1
    view = await queue.get(platform.default_org_id, job.id)
    assert (view.status, view.attempts, view.last_outcome) == ("pending", 1, "failed:twilio:20429")
    assert view.next_attempt_at == NOON + timedelta(seconds=60)
    [call] = await calls_of(platform, job.id)
    assert (call.status, call.end_reason, call.provider_call_id) == ("failed", "twilio:20429", None)


async def test_an_invalid_number_is_not_dialed_again(platform: Platform) -> None:
    """21211: no retry can make a number valid; the job fails at once and says why."""
    dialer = FakeDialer(
        refuse={LONDON[0]: CarrierError(21211, "The 'To' number is not a valid phone number.")}
    )
    queue = queue_of(platform, dialer)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0])
    assert await queue.dispatch_once(at=NOON) == 1
    view = await queue.get(platform.default_org_id, job.id)
    assert (view.status, view.attempts, view.last_outcome) == ("failed", 1, "failed:twilio:21211")
    assert await queue.dispatch_once(at=NOON + timedelta(hours=1)) == 0


async def test_premium_rate_and_own_numbers_are_never_queued(platform: Platform) -> None:
    """A 900 number bills the caller and pays whoever holds it (toll fraud); our own number rings back
    into our webhook."""
    queue = queue_of(platform, FakeDialer())
    org = platform.default_org_id
    with pytest.raises(RefusedNumber, match=r"^to is a premium-rate number") as premium:
        await queue.enqueue(org, agent_ref="sales", to="+19005550178")
    assert (premium.value.field, premium.value.reason) == ("to", "premium_rate")
    with pytest.raises(RefusedNumber, match=r"^to is one of the organization's own numbers$"):
        await queue.enqueue(org, agent_ref="sales", to="+442079460999")  # PARLEY_TWILIO_CALLER_ID
    assert (await queue.page(org)).data == []


async def test_a_job_queued_to_a_premium_rate_number_earlier_fails_undialed(platform: Platform) -> None:
    """Queued before such numbers were refused (a lead's call-back): it fails at its turn, not retried."""
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    org = platform.default_org_id
    sales = await platform.agents.get(org, "sales")
    async with platform.db.session() as session:
        old, _ = await OutboundJobRepository(session).create(
            org,
            agent_id=sales.id,
            to_number="+19005550177",
            from_number="+442079460999",
            priority=0,
            idempotency_key=None,
            max_attempts=3,
            next_attempt_at=NOON,
            window_start="00:00",
            window_end="24:00",
            time_zone="America/New_York",
            metadata={},
        )
        old_id = old.id
    assert await queue.dispatch_once(at=NOON) == 1
    assert dialer.placed == [] and await calls_of(platform, old_id) == []
    view = await queue.get(org, old_id)
    assert (view.status, view.last_outcome) == ("failed", "premium_rate")


async def test_a_job_whose_agent_stopped_loading_after_it_was_queued_fails_undialed(
    platform: Platform,
) -> None:
    """Not dialed again and again: every attempt would meet the same stored configuration."""
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    org = platform.default_org_id
    job = await queue.enqueue(org, agent_ref="sales", to=LONDON[0])
    sales = await platform.agents.get(org, "sales")
    async with platform.db.session() as session:
        version = await session.scalar(select(AgentVersion).where(AgentVersion.agent_id == sales.id))
        assert version is not None
        cyclic = {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}
        version.config = {**version.config, "tools": [{"name": "x", "kind": "static", "parameters": cyclic}]}
    assert await queue.dispatch_once(at=NOON) == 1
    assert dialer.placed == [] and await calls_of(platform, job.id) == []
    view = await queue.get(org, job.id)
    assert (view.status, view.last_outcome) == ("failed", "agent_unloadable")


async def test_an_answered_call_that_fails_midway_is_not_dialed_again(platform: Platform) -> None:
    """The callee was reached: a line that drops mid-conversation is no reason to ring them again."""
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0])
    assert await queue.dispatch_once(at=NOON) == 1
    [call] = await calls_of(platform, job.id)
    await platform.calls.set_status(call.id, "in_progress")
    await platform.calls.set_status(call.id, "failed", reason="interrupted")
    view = await queue.outcome(call.id, "failed", at=NOON)
    assert view is not None and (view.status, view.last_outcome) == ("completed", "failed:interrupted")


async def test_an_answered_call_a_draining_server_hung_up_on_is_dialed_again(platform: Platform) -> None:
    """The callee picked up as this server began to drain, and it hung up on them: Twilio bills the
    answered seconds, but nobody spoke, so the job rings them again."""
    dialer = FakeDialer()
    queue = queue_of(platform, dialer)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0])
    assert await queue.dispatch_once(at=NOON) == 1
    [call] = await calls_of(platform, job.id)
    assert call.provider_call_id is not None
    await platform.calls.set_status(call.id, "failed", reason=SERVER_UNAVAILABLE)
    ended = utcnow()
    update = await platform.phone.status(call.provider_call_id, "completed", ended, duration_s=2)
    assert update.call is not None and update.call.started_at is not None, "answered on the books: billed"
    view = await queue.outcome(call.id, "completed", at=NOON)
    assert view is not None and (view.status, view.last_outcome) == ("pending", "failed:server_unavailable")
    assert view.next_attempt_at is not None and view.next_attempt_at > NOON


async def test_without_a_public_url_no_call_is_placed_and_the_error_says_why(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer, public_url=None)
    job = await queue.enqueue(platform.default_org_id, agent_ref="sales", to=LONDON[0])
    assert await queue.dispatch_once(at=NOON) == 1
    assert dialer.placed == []
    [call] = await calls_of(platform, job.id)
    assert (call.status, call.end_reason) == ("failed", PUBLIC_URL_REQUIRED)


async def test_bad_requests_are_refused_before_anything_is_queued(platform: Platform) -> None:
    queue = queue_of(platform, FakeDialer())
    org = platform.default_org_id
    refused: list[dict[str, Any]] = [
        {"to": "020 7946 0001"},
        {"to": "+4412"},
        {"to": LONDON[0], "time_zone": "Mars/Olympus"},
        {"to": LONDON[0], "time_zone": "America"},  # a folder of the zone database, not a zone
        {"to": LONDON[0], "time_zone": "../../etc/passwd"},
        {"to": LONDON[0], "window": "9-17"},
        {"to": LONDON[0], "max_attempts": 0},
    ]
    for bad in refused:
        with pytest.raises(InvalidOutboundJob):
            await queue.enqueue(org, agent_ref="sales", **bad)
    with pytest.raises(NotFound):
        await queue.enqueue(org, agent_ref="nobody", to=LONDON[0])
    no_caller = queue_of(platform, FakeDialer(), twilio_caller_id=None)
    with pytest.raises(InvalidOutboundJob, match="no number to call from"):
        await no_caller.enqueue(org, agent_ref="sales", to=LONDON[0])
    assert (await queue.page(org)).data == []


async def test_recovery_settles_attempts_a_dead_process_left_dialing(platform: Platform) -> None:
    org = platform.default_org_id
    # 1. the call ended on the books, but the process died before the job heard of it
    first = queue_of(platform, FakeDialer())
    ended = await first.enqueue(org, agent_ref="sales", to=LONDON[0])
    await first.dispatch_once(at=NOON)
    ended_call = (await first.get(org, ended.id)).last_call_id
    assert ended_call is not None
    await platform.calls.set_status(ended_call, CallStatus.IN_PROGRESS)
    await platform.calls.set_status(ended_call, CallStatus.COMPLETED)
    # 2. the process died while the carrier was being asked
    hung = FakeDialer(hold=asyncio.Event())
    second = queue_of(platform, hung)
    unconfirmed = await second.enqueue(org, agent_ref="sales", to=LONDON[1])
    dispatching = asyncio.create_task(second.dispatch_once(at=NOON))
    await asyncio.wait_for(hung.arrivals.get(), 30)
    dispatching.cancel()
    with pytest.raises(asyncio.CancelledError):
        await dispatching
    # 3. the process died between claiming a job and writing its call
    unlinked = await first.enqueue(org, agent_ref="sales", to=LONDON[2])
    async with platform.db.session() as session:
        claim = await OutboundJobRepository(session).claim(NOON, Caps(5, 1), lambda job, now: None)
    assert [j.id for j in claim.claimed] == [unlinked.id]

    restarted = queue_of(platform, FakeDialer())
    assert await restarted.recover(at=utcnow()) == 1, "unconfirmed attempts may still be in flight"
    assert (await restarted.get(org, ended.id)).status == "completed"
    assert await restarted.recover(at=utcnow() + timedelta(minutes=3)) == 2
    retried = await restarted.get(org, unconfirmed.id)
    assert (retried.status, retried.attempts, retried.last_outcome) == ("pending", 1, "failed:interrupted")
    reclaimed = await restarted.get(org, unlinked.id)
    assert (reclaimed.status, reclaimed.attempts) == ("pending", 0), "it was never placed"


async def test_run_recovers_then_dispatches_until_cancelled(platform: Platform) -> None:
    dialer = FakeDialer()
    queue = queue_of(platform, dialer, outbound_poll_s=0.01, outbound_retry_backoff_s=[0.0])
    org = platform.default_org_id
    job = await queue.enqueue(org, agent_ref="sales", to=LONDON[0], window="00:00-24:00")
    await queue.dispatch_once()
    left = await dialer.arrivals.get()
    await platform.calls.set_status(left, CallStatus.BUSY)  # its outcome never reached the queue

    runner = asyncio.create_task(queue.run())
    try:
        retried = await asyncio.wait_for(dialer.arrivals.get(), 30)
    finally:
        runner.cancel()
        with pytest.raises(asyncio.CancelledError):
            await runner
    view = await queue.get(org, job.id)
    assert (view.status, view.attempts, view.last_call_id) == ("dialing", 2, retried) and retried != left


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_workers_sharing_postgresql_never_claim_a_job_twice_nor_pass_the_limit(
    db_url: str, tmp_path: Path
) -> None:
    workers = [await _open(_settings(tmp_path / "w0", db_url))]  # two processes, one database
    workers.append(await Platform.open(_settings(tmp_path / "w1", db_url), consume=False, recover=False))
    try:
        org = workers[0].default_org_id
        dialers = [FakeDialer(), FakeDialer()]
        queues = [queue_of(p, d, outbound_org_concurrency=4) for p, d in zip(workers, dialers, strict=True)]
        numbers = [f"+44207946{n:04d}" for n in range(10, 20)]
        for number in numbers:
            await queues[0].enqueue(org, agent_ref="sales", to=number)
        raced = await asyncio.gather(
            *(queues[1].enqueue(org, agent_ref="sales", to=numbers[0], idempotency_key="k") for _ in range(4))
        )
        assert len({job.id for job in raced}) == 1

        for _ in range(3):
            await asyncio.gather(*(q.dispatch_once(at=NOON) for q in queues))
        placed = dialers[0].numbers + dialers[1].numbers
        assert len(placed) == 4 and len(set(placed)) == 4
        dialing = (await queues[0].page(org, status="dialing")).data
        assert len(dialing) == 4 and all(j.attempts == 1 for j in dialing)
    finally:
        for worker in workers:
            await worker.close()
