"""A lead's call-back whose job is canceled: the outcome says ``canceled`` (docs/leads.md, "The outcome"),
whether the business canceled it before the call or while the lead was on the line, and a lead who was
reached is still ``called``, with what was said."""

from __future__ import annotations

from pathlib import Path

import pytest

from parley.config import Settings
from parley.jobs.outbound import OutboundQueue
from parley.platform.runtime import Platform
from parley.store.calls import CallRepository
from parley.store.lifecycle import CallStatus
from tests.jobs.test_outbound import FakeDialer
from tests.leads.conftest import TUESDAY_NOON_NEW_YORK, callback_settings
from tests.leads.test_callbacks import outcome_emails, plumber, submit, turn

LEAD_PHONE = "+12015550123"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return callback_settings(db_url, tmp_path, outbound_max_attempts=2, outbound_retry_backoff_s=[60.0])


@pytest.fixture
def dialer() -> FakeDialer:
    return FakeDialer()


@pytest.fixture
def queue(platform: Platform, dialer: FakeDialer) -> OutboundQueue:
    return OutboundQueue(platform, platform.settings, dialer)


async def test_a_callback_canceled_while_the_lead_talked_is_canceled_and_the_lead_was_reached(
    platform: Platform, queue: OutboundQueue, dialer: FakeDialer
) -> None:
    org = platform.default_org_id
    await plumber(platform, analysis=False)
    lead_id = await submit(platform)
    made = await platform.callbacks.request(queue, org, lead_id, business_id=None, requested_by="api")
    assert await queue.dispatch_once(at=TUESDAY_NOON_NEW_YORK) == 1
    call_id = dialer.last_call(LEAD_PHONE)
    await platform.calls.set_status(call_id, CallStatus.IN_PROGRESS)  # Ada picks up
    assert (await queue.cancel(org, made.job_id)).cancel_requested  # the business cancels meanwhile
    async with platform.db.session() as session:
        await CallRepository(session).save_turns(
            [turn(call_id, 1, "agent", "Hi Ada, this is Hudson Plumbing.", 0)]
        )
    await platform.calls.set_status(call_id, CallStatus.COMPLETED, reason="hung_up_by_api")
    await queue.outcome(call_id, "completed", at=TUESDAY_NOON_NEW_YORK)

    lead = await platform.leads.lead(org, lead_id)
    assert lead.outcome is not None
    assert (lead.outcome["result"], lead.outcome["status"], lead.outcome["job_status"]) == (
        "canceled",
        "canceled",
        "canceled",
    )
    assert lead.status == "called", "Ada was reached before the call-back was canceled"
    assert lead.outcome["call_status"] == "completed" and lead.outcome["duration_s"] is not None
    assert lead.outcome["transcript"] == [{"speaker": "agent", "text": "Hi Ada, this is Hudson Plumbing."}]
    assert len(await outcome_emails(platform, lead_id)) == 1


async def test_a_callback_canceled_before_its_call_is_canceled(
    platform: Platform, queue: OutboundQueue, dialer: FakeDialer
) -> None:
    org = platform.default_org_id
    await plumber(platform, analysis=False)
    lead_id = await submit(platform)
    made = await platform.callbacks.request(queue, org, lead_id, business_id=None, requested_by="api")
    await queue.cancel(org, made.job_id)
    assert await queue.dispatch_once(at=TUESDAY_NOON_NEW_YORK) == 0 and dialer.placed == []
    lead = await platform.leads.lead(org, lead_id)
    assert lead.outcome is not None
    assert (lead.outcome["result"], lead.outcome["status"], lead.outcome["job_status"]) == (
        "canceled",
        "canceled",
        "canceled",
    )
    assert lead.status == "callback_failed" and lead.outcome["call_id"] is None
