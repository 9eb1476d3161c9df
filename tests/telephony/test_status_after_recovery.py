"""Twilio's callbacks for a call this server lost mid-flight (killed, then closed by start-up recovery as
``failed``, reason ``interrupted``): the carrier's ``completed`` still bills what the carrier reports, the
record keeps that the call was interrupted here, and the callbacks that do contradict it change nothing."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from parley.platform.recovery import recover_interrupted
from parley.store.models import Call
from parley.store.types import utcnow
from tests.telephony.conftest import Phone, call_sid
from tests.telephony.test_carrier_durations_and_late_verdicts import costs
from tests.telephony.test_webhooks import outbound_call, progress

ALIVE_S = 40
"""How long the call ran on this server before it died (its last heartbeat)."""
CARRIER_S = 95
"""How long Twilio says the call lasted: the line stayed up after the server died, and Twilio bills it."""


async def interrupted_call(phone: Phone) -> tuple[str, str, datetime]:
    """A call answered ten minutes ago whose server died after ``ALIVE_S`` seconds, as the restarted
    server's recovery leaves it; its CallSid, id and answer time (a whole second, as Twilio stamps)."""
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=await phone.agent())
    answered = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    in_progress = await phone.webhook("/twilio/status", progress(sid, "in-progress", answered))
    assert in_progress.status_code == 204, in_progress.text
    async with phone.platform.db.session() as session:  # its last heartbeat, then nothing: killed
        row = await session.get(Call, call_id)
        assert row is not None
        row.updated_at = answered + timedelta(seconds=ALIVE_S)
    report = await recover_interrupted(phone.platform, stale_after=timedelta(minutes=3))
    assert report.calls == 1
    return sid, call_id, answered


async def record(phone: Phone, call_id: str) -> dict[str, Any]:
    response = await phone.http.get(f"/v1/calls/{call_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_twilios_completed_for_an_interrupted_call_bills_the_carriers_duration(phone: Phone) -> None:
    sid, call_id, answered = await interrupted_call(phone)
    before = await record(phone, call_id)
    assert (before["status"], before["end_reason"], before["duration_s"]) == (
        "failed",
        "interrupted",
        ALIVE_S,
    )
    assert (await costs(phone, call_id))["telephony_minutes"] == 1.0

    completed = progress(
        sid, "completed", answered + timedelta(seconds=CARRIER_S), CallDuration=str(CARRIER_S)
    )
    delivered = await phone.webhook("/twilio/status", completed)
    assert delivered.status_code == 204, delivered.text
    assert (await costs(phone, call_id))["telephony_minutes"] == 2.0, "Twilio bills 95 s: two minutes"
    after = await record(phone, call_id)
    assert after["metrics"]["carrier_duration_s"] == CARRIER_S

    # The record still says what happened on this side: interrupted, alive for 40 s.
    kept = ("status", "end_reason", "started_at", "ended_at", "duration_s")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}

    retried = await phone.webhook("/twilio/status", completed)  # Twilio delivers it again
    assert retried.status_code == 204
    assert (await costs(phone, call_id))["telephony_minutes"] == 2.0
    assert {k: (await record(phone, call_id))[k] for k in kept} == {k: before[k] for k in kept}


@pytest.mark.parametrize(
    ("status", "extra"),
    [("busy", {}), ("no-answer", {}), ("failed", {"SipResponseCode": "500"})],
)
async def test_other_terminal_callbacks_for_an_interrupted_call_change_nothing(
    phone: Phone, status: str, extra: dict[str, str]
) -> None:
    sid, call_id, answered = await interrupted_call(phone)
    before = await record(phone, call_id)
    late = progress(sid, status, answered + timedelta(seconds=CARRIER_S), **extra)
    delivered = await phone.webhook("/twilio/status", late)
    assert delivered.status_code == 204, "acknowledged: Twilio cannot fix it by sending it again"
    after = await record(phone, call_id)
    kept = ("status", "end_reason", "started_at", "ended_at", "duration_s", "costs")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert (after["status"], after["end_reason"]) == ("failed", "interrupted")
