"""Twilio's callbacks for a call that failed on this side (killed, then closed by start-up recovery as
``failed``, reason ``interrupted``; its media WebSocket dropped, ``transport_error``; or a draining server
hung up on it as it was answered, ``server_unavailable``): the carrier's
``completed`` still bills what the carrier reports, even when this side never saw the call answered, the
record keeps how the call failed here, and the callbacks that do contradict it change nothing (nor does a
``completed`` after the carrier's own failure)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from parley.platform.live import TRANSPORT_ERROR
from parley.platform.recovery import recover_interrupted
from parley.store.models import Call
from parley.store.types import utcnow
from tests.telephony.conftest import CALLER, NUMBER, Phone, call_sid
from tests.telephony.test_carrier_durations_and_late_verdicts import costs
from tests.telephony.test_webhooks import outbound_call, progress, verbs

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


async def transport_failed_call(phone: Phone) -> tuple[str, str, datetime]:
    """A call answered ten minutes ago whose media WebSocket dropped after ``ALIVE_S`` seconds (the live
    call fails it, as ``LiveCall.finish(failed=True)`` does); its CallSid, id and answer time."""
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=await phone.agent())
    answered = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    in_progress = await phone.webhook("/twilio/status", progress(sid, "in-progress", answered))
    assert in_progress.status_code == 204, in_progress.text
    dropped = answered + timedelta(seconds=ALIVE_S)
    await phone.platform.calls.set_status(call_id, "failed", reason=TRANSPORT_ERROR, at=dropped)
    return sid, call_id, answered


LostCall = Callable[[Phone], Awaitable[tuple[str, str, datetime]]]


async def record(phone: Phone, call_id: str) -> dict[str, Any]:
    response = await phone.http.get(f"/v1/calls/{call_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize(
    ("lose", "reason"),
    [(interrupted_call, "interrupted"), (transport_failed_call, "transport_error")],
    ids=["interrupted", "transport_error"],
)
async def test_twilios_completed_for_a_call_failed_here_bills_the_carriers_duration(
    phone: Phone, lose: LostCall, reason: str
) -> None:
    sid, call_id, answered = await lose(phone)
    before = await record(phone, call_id)
    assert (before["status"], before["end_reason"], before["duration_s"]) == ("failed", reason, ALIVE_S)
    assert (await costs(phone, call_id))["telephony_minutes"] == 1.0

    completed = progress(
        sid, "completed", answered + timedelta(seconds=CARRIER_S), CallDuration=str(CARRIER_S)
    )
    delivered = await phone.webhook("/twilio/status", completed)
    assert delivered.status_code == 204, delivered.text
    assert (await costs(phone, call_id))["telephony_minutes"] == 2.0, "Twilio bills 95 s: two minutes"
    after = await record(phone, call_id)
    assert after["metrics"]["carrier_duration_s"] == CARRIER_S

    # The record still says what happened on this side: failed after 40 s.
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


RANG_S = 20
"""How long a ringing call's row was kept fresh before this server died."""


@pytest.mark.parametrize(
    ("answered_after_s", "seen_s"),
    [(10, 10), (RANG_S + 30, 0)],
    ids=["answered-before-the-server-died", "answered-after-the-server-died"],
)
async def test_twilios_completed_bills_an_interrupted_call_this_side_never_saw_answered(
    phone: Phone, answered_after_s: int, seen_s: int
) -> None:
    """Recovery closed the call while it was still ringing on the books (its "answered" callback never
    came): Twilio's ``completed`` says it was answered ``CallDuration`` seconds before it ended, and
    Twilio bills those seconds."""
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=await phone.agent())
    rang = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    assert (await phone.webhook("/twilio/status", progress(sid, "ringing", rang))).status_code == 204
    async with phone.platform.db.session() as session:  # last touched while ringing, then killed
        row = await session.get(Call, call_id)
        assert row is not None
        row.updated_at = rang + timedelta(seconds=RANG_S)
    assert (await recover_interrupted(phone.platform, stale_after=timedelta(minutes=3))).calls == 1
    before = await record(phone, call_id)
    assert (before["status"], before["end_reason"], before["started_at"]) == ("failed", "interrupted", None)
    assert "telephony_minutes" not in await costs(phone, call_id)

    answered = rang + timedelta(seconds=answered_after_s)
    completed = progress(
        sid, "completed", answered + timedelta(seconds=CARRIER_S), CallDuration=str(CARRIER_S)
    )
    assert (await phone.webhook("/twilio/status", completed)).status_code == 204
    assert (await costs(phone, call_id))["telephony_minutes"] == 2.0, "Twilio bills 95 s: two minutes"
    after = await record(phone, call_id)
    assert after["metrics"]["carrier_duration_s"] == CARRIER_S
    kept = ("status", "end_reason", "ended_at")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    # Answered when the carrier says, but not after this side's end: it saw ``seen_s`` of the call.
    ended = datetime.fromisoformat(before["ended_at"])
    assert datetime.fromisoformat(after["started_at"]) == min(answered, ended)
    assert after["duration_s"] == seen_s

    retried = await phone.webhook("/twilio/status", completed)  # Twilio delivers it again
    assert retried.status_code == 204
    assert await record(phone, call_id) == after


@pytest.mark.parametrize("extra", [{}, {"SipResponseCode": "503"}], ids=["carrier_failed", "carrier_sip"])
async def test_twilios_completed_after_its_own_failure_is_still_refused(
    phone: Phone, extra: dict[str, str]
) -> None:
    """The carrier failed the call itself: a ``completed`` for it contradicts the carrier's own word, and
    nothing is billed."""
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=await phone.agent())
    rang = (utcnow() - timedelta(minutes=10)).replace(microsecond=0)
    assert (await phone.webhook("/twilio/status", progress(sid, "ringing", rang))).status_code == 204
    failed = progress(sid, "failed", rang + timedelta(seconds=5), **extra)
    assert (await phone.webhook("/twilio/status", failed)).status_code == 204
    before = await record(phone, call_id)
    reason = "carrier_sip_503" if extra else "carrier_failed"
    assert (before["status"], before["end_reason"]) == ("failed", reason)

    completed = progress(
        sid, "completed", rang + timedelta(seconds=5 + CARRIER_S), CallDuration=str(CARRIER_S)
    )
    delivered = await phone.webhook("/twilio/status", completed)
    assert delivered.status_code == 204, "acknowledged: Twilio cannot fix it by sending it again"
    after = await record(phone, call_id)
    assert after == before
    assert (after["status"], after["end_reason"], after["started_at"]) == ("failed", reason, None)
    assert "telephony_minutes" not in await costs(phone, call_id)


async def test_twilios_completed_bills_an_outbound_call_a_draining_server_hung_up_on(phone: Phone) -> None:
    """The callee answered as this server began to drain: it hung up at once, and nobody spoke. Twilio
    still bills the answered call (a minute at least), so the books must too."""
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=await phone.agent())
    phone.runtime.draining = True
    answered = {"CallSid": sid, "From": NUMBER, "To": CALLER, "CallStatus": "in-progress"}
    assert verbs(await phone.webhook(f"/twilio/voice?call_id={call_id}", answered)) == ["Hangup"]
    before = await record(phone, call_id)
    assert (before["status"], before["end_reason"], before["started_at"]) == (
        "failed",
        "server_unavailable",
        None,
    )
    assert "telephony_minutes" not in await costs(phone, call_id)

    ended = datetime.fromisoformat(before["ended_at"]).replace(microsecond=0) + timedelta(seconds=1)
    completed = progress(sid, "completed", ended, CallDuration="2")
    assert (await phone.webhook("/twilio/status", completed)).status_code == 204
    assert (await costs(phone, call_id))["telephony_minutes"] == 1.0, "Twilio bills the started minute"
    after = await record(phone, call_id)
    kept = ("status", "end_reason", "ended_at")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert after["metrics"]["carrier_duration_s"] == 2
