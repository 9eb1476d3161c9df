"""What Twilio's callbacks leave on a call's record when they race the session or arrive late: the call
lasts as long as it really did (Twilio stamps to the second, the session to the microsecond), telephony
costs what Twilio bills (its ``CallDuration``, each started minute), and an answering-machine verdict that
comes after the call ended, or contradicts the first, changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from parley.platform.runtime import Platform
from tests.telephony.conftest import FakeLive, Phone, call_sid
from tests.telephony.test_webhooks import amd, call_row, outbound_call, progress

T0 = datetime(2026, 11, 25, 18, 0, 0, tzinfo=UTC)


async def costs(phone: Phone, call_id: str) -> dict[str, float]:
    record: dict[str, Any] = (await phone.http.get(f"/v1/calls/{call_id}")).json()
    return {line["kind"]: line["quantity"] for line in record["costs"]["lines"]}


async def answered_call(phone: Phone, n: int, answered_at: datetime) -> tuple[str, str]:
    """An outbound call whose session started (the stream connected) at ``answered_at``."""
    sid = call_sid(n)
    call_id = await outbound_call(phone, sid, agent_id=await phone.agent(f"agent-{n}"))
    await phone.platform.calls.set_status(call_id, "in_progress", at=answered_at)
    return sid, call_id


async def session_ended(platform: Platform, call_id: str, at: datetime) -> None:
    """The session's own end, as its timeline reports it (to the microsecond)."""
    await platform.calls.set_status(call_id, "completed", reason="caller_hung_up", at=at)


async def test_a_short_call_lasts_as_long_as_the_session_and_is_billed_a_minute(phone: Phone) -> None:
    started = T0 + timedelta(seconds=5, microseconds=700_000)
    ended = T0 + timedelta(seconds=6, microseconds=100_000)
    sid, call_id = await answered_call(phone, 1, started)
    # Twilio's "completed" lands first, stamped to the second (06), and says the call lasted 1 s.
    completed = progress(sid, "completed", T0 + timedelta(seconds=6), CallDuration="1")
    assert (await phone.webhook("/twilio/status", completed)).status_code == 204
    await session_ended(phone.platform, call_id, ended)

    call = await call_row(phone.platform, call_id)
    assert (call.started_at, call.ended_at, call.end_reason) == (started, ended, "caller_hung_up")
    record = (await phone.http.get(f"/v1/calls/{call_id}")).json()
    assert record["duration_s"] == 0.4
    assert (await costs(phone, call_id))["telephony_minutes"] == 1.0


async def test_a_call_twilio_stamps_in_the_second_it_was_answered_is_not_zero_seconds_long(
    phone: Phone,
) -> None:
    started = T0 + timedelta(seconds=5, microseconds=700_000)
    sid, call_id = await answered_call(phone, 1, started)
    completed = progress(sid, "completed", T0 + timedelta(seconds=5), CallDuration="0")
    assert (await phone.webhook("/twilio/status", completed)).status_code == 204
    assert (await costs(phone, call_id))["telephony_minutes"] == 1.0, "Twilio bills an answered call"
    await session_ended(phone.platform, call_id, T0 + timedelta(seconds=5, microseconds=950_000))
    record = (await phone.http.get(f"/v1/calls/{call_id}")).json()
    assert record["duration_s"] == 0.25


async def test_telephony_is_billed_for_the_seconds_twilio_reports(phone: Phone) -> None:
    """The session connected 2.5 s after Twilio's answer and its end was recorded first: its own length
    is under a minute, Twilio's (what Twilio bills) is over one."""
    started = T0 + timedelta(seconds=2, microseconds=500_000)
    sid, call_id = await answered_call(phone, 1, started)
    await session_ended(phone.platform, call_id, started + timedelta(seconds=59))
    assert (await costs(phone, call_id))["telephony_minutes"] == 1.0
    completed = progress(sid, "completed", T0 + timedelta(seconds=61), CallDuration="61")
    assert (await phone.webhook("/twilio/status", completed)).status_code == 204
    assert (await phone.webhook("/twilio/status", completed)).status_code == 204  # Twilio retried it

    assert (await costs(phone, call_id))["telephony_minutes"] == 2.0
    record = (await phone.http.get(f"/v1/calls/{call_id}")).json()
    assert record["duration_s"] == 59.0, "the call's own length is unchanged"
    assert record["metrics"]["carrier_duration_s"] == 61


async def test_a_late_stamp_from_another_moment_does_not_move_the_end(phone: Phone) -> None:
    """Witnesses of two moments (Twilio's stamp, a session ended long after) keep the first, as before."""
    sid, call_id = await answered_call(phone, 1, T0)
    await phone.webhook("/twilio/status", progress(sid, "completed", T0 + timedelta(seconds=20)))
    await session_ended(phone.platform, call_id, T0 + timedelta(seconds=25))
    assert (await call_row(phone.platform, call_id)).ended_at == T0 + timedelta(seconds=20)


# --- answering machine verdicts that come too late ----------------------------------------------------


async def test_a_machine_verdict_after_the_call_ended_is_ignored(phone: Phone) -> None:
    sid, call_id = await answered_call(phone, 1, T0)
    await phone.webhook("/twilio/status", progress(sid, "completed", T0 + timedelta(seconds=30)))
    live = FakeLive()
    phone.runtime.sessions[(await call_row(phone.platform, call_id)).session_id] = live

    late = await phone.webhook("/twilio/amd", amd(sid, "machine_end_beep"))
    assert late.status_code == 204, "answered, so Twilio does not retry it"
    assert phone.rest.hangups == [], "a finished call is not hung up on"
    assert live.ended == [] and live.engine.said == []
    record = (await phone.http.get(f"/v1/calls/{call_id}")).json()
    assert (record["status"], record["answered_by"]) == ("completed", None)


async def test_a_machine_verdict_after_a_person_was_recognised_is_ignored(phone: Phone) -> None:
    sid, call_id = await answered_call(phone, 1, T0)
    live = FakeLive()
    phone.runtime.sessions[(await call_row(phone.platform, call_id)).session_id] = live
    await phone.webhook("/twilio/amd", amd(sid, "human"))
    await phone.webhook("/twilio/amd", amd(sid, "machine_end_beep"))
    assert phone.rest.hangups == [] and live.ended == [], "the person on the line keeps talking"
    assert (await call_row(phone.platform, call_id)).answered_by == "human"


async def test_a_machine_is_acted_on_once_whatever_verdicts_follow(phone: Phone) -> None:
    sid, call_id = await answered_call(phone, 1, T0)
    live = FakeLive()
    phone.runtime.sessions[(await call_row(phone.platform, call_id)).session_id] = live
    await phone.webhook("/twilio/amd", amd(sid, "machine_start"))
    await phone.webhook("/twilio/amd", amd(sid, "machine_end_beep"))
    await phone.webhook("/twilio/amd", amd(sid, "human"))
    assert phone.rest.hangups == [sid] and live.ended == ["answering_machine"]
    assert (await call_row(phone.platform, call_id)).answered_by == "machine_end_beep"
