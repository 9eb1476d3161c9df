"""Twilio's webhooks end to end through the app, on a real store: inbound calls, outbound calls being
answered, status callbacks in any order, answering machines."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from parley.config import Settings
from parley.platform.runtime import Platform
from parley.store.models import Call, OutboundJob
from parley.store.types import new_id, utcnow
from tests.telephony.conftest import BASE, CALLER, NUMBER, FakeLive, Phone, call_sid, make_app, settings_for

T0 = datetime(2026, 11, 25, 18, 0, 0, tzinfo=UTC)


def stream_of(response: httpx.Response) -> tuple[str, dict[str, str]]:
    """The stream URL and parameters of a ``<Connect><Stream>`` answer."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(response.text)
    [stream] = root.iter("Stream")
    assert [e.tag for e in root] == ["Connect"]
    return str(stream.get("url")), {str(p.get("name")): str(p.get("value")) for p in stream}


def verbs(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e.tag for e in ET.fromstring(response.text)]


def incoming(sid: str, to: str = NUMBER) -> dict[str, str]:
    """What Twilio posts to a number's voice URL (https://www.twilio.com/docs/voice/twiml#request-parameters)."""
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "a1" * 16,
        "From": CALLER,
        "To": to,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


def progress(sid: str, status: str, at: datetime, **extra: str) -> dict[str, str]:
    """A StatusCallbackEvent callback (https://www.twilio.com/docs/voice/api/call-resource#statuscallback)."""
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "a1" * 16,
        "CallStatus": status,
        "Timestamp": format_datetime(at),
        "CallbackSource": "call-progress-events",
        **extra,
    }


async def call_row(platform: Platform, call_id: str) -> Call:
    async with platform.db.session() as session:
        call = await session.get(Call, call_id)
        assert call is not None
        return call


async def outbound_call(phone: Phone, sid: str | None, *, agent_id: str, job_id: str | None = None) -> str:
    call, _ = await phone.platform.calls.create(
        phone.platform.default_org_id,
        direction="outbound",
        transport="twilio",
        agent_ref=agent_id,
        from_number=NUMBER,
        to_number=CALLER,
        provider_call_id=sid,
        job_id=job_id,
    )
    return call.id


# --- inbound -------------------------------------------------------------------------------------------


async def test_an_inbound_call_is_put_on_the_books_and_connected_to_a_stream(phone: Phone) -> None:
    agent_id = await phone.agent()
    added = await phone.http.post(
        "/v1/phone-numbers", json={"number": "+1 (415) 555-0100", "agent": "support"}
    )
    assert added.status_code == 201, added.text
    assert added.json()["number"] == NUMBER

    answer = await phone.webhook("/twilio/voice", incoming(call_sid(1)))
    url, parameters = stream_of(answer)
    assert url == "ws://parley.test/twilio/stream"
    call = (await phone.http.get(f"/v1/calls/{parameters['call_id']}")).json()
    assert call["direction"] == "inbound" and call["transport"] == "twilio"
    assert (call["from_number"], call["to_number"]) == (CALLER, NUMBER)
    assert call["provider_call_id"] == call_sid(1)
    assert call["status"] == "ringing"
    assert (call["agent_id"], call["agent_version"]) == (agent_id, 1)
    assert phone.runtime.warmed == [call["session_id"]], "its agent loads while Twilio opens the stream"

    again = await phone.webhook("/twilio/voice", incoming(call_sid(1)))
    assert stream_of(again)[1] == parameters, "Twilio retrying the webhook gets the same call"
    listed = (await phone.http.get("/v1/calls")).json()["data"]
    assert [c["id"] for c in listed] == [parameters["call_id"]]


async def test_a_call_to_a_number_nobody_answers_is_rejected_and_not_recorded(phone: Phone) -> None:
    await phone.agent()
    answer = await phone.webhook("/twilio/voice", incoming(call_sid(1), to="+14155550199"))
    assert verbs(answer) == ["Reject"]
    assert (await phone.http.get("/v1/calls")).json()["data"] == []


async def test_the_agent_a_number_routes_to_cannot_be_deleted_so_its_calls_are_answered(phone: Phone) -> None:
    await phone.agent()
    await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "support"})
    refused = await phone.http.delete("/v1/agents/support")
    assert refused.status_code == 409 and NUMBER in refused.json()["detail"]
    _url, parameters = stream_of(await phone.webhook("/twilio/voice", incoming(call_sid(1))))
    assert (await phone.http.get(f"/v1/calls/{parameters['call_id']}")).status_code == 200, "on the books"

    assert (await phone.http.delete(f"/v1/phone-numbers/{NUMBER}")).status_code == 204
    assert (await phone.http.delete("/v1/agents/support")).status_code == 204, "re-routed first: deleted"
    assert verbs(await phone.webhook("/twilio/voice", incoming(call_sid(2)))) == ["Reject"]


async def test_behind_a_proxy_the_public_url_is_signed_and_streamed_to(
    platform: Platform, sqlite_url: str, tmp_path: Any
) -> None:
    public = settings_for(tmp_path, sqlite_url, public_url="https://voice.example.com")
    platform.settings = public
    app = make_app(platform)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        phone = Phone(http, platform, None, None, app)  # type: ignore[arg-type]
        await phone.agent()
        await platform.phone.add_number(platform.default_org_id, NUMBER, "support")
        local = await phone.webhook("/twilio/voice", incoming(call_sid(1)))
        assert local.status_code == 403, "signed for the URL this server sees, not the one Twilio used"
        answer = await phone.webhook(
            "/twilio/voice", incoming(call_sid(1)), signed_url="https://voice.example.com/twilio/voice"
        )
        assert stream_of(answer)[0] == "wss://voice.example.com/twilio/stream"


async def test_a_server_that_drains_turns_new_callers_away(phone: Phone) -> None:
    await phone.agent()
    await phone.platform.phone.add_number(phone.platform.default_org_id, NUMBER, "support")
    phone.runtime.draining = True
    assert verbs(await phone.webhook("/twilio/voice", incoming(call_sid(1)))) == ["Reject"]
    [call] = (await phone.http.get("/v1/calls")).json()["data"]
    assert (call["status"], call["end_reason"]) == ("failed", "server_unavailable")


# --- outbound, answered ----------------------------------------------------------------------------------


async def test_an_answered_outbound_call_gets_its_stream_and_its_call_sid(phone: Phone) -> None:
    agent_id = await phone.agent()
    call_id = await outbound_call(phone, None, agent_id=agent_id)
    params = {"CallSid": call_sid(7), "From": NUMBER, "To": CALLER, "CallStatus": "in-progress"}
    answer = await phone.webhook(f"/twilio/voice?call_id={call_id}", params)
    assert stream_of(answer)[1] == {"call_id": call_id}
    assert (await call_row(phone.platform, call_id)).provider_call_id == call_sid(7)

    other = {**params, "CallSid": call_sid(8)}
    assert verbs(await phone.webhook(f"/twilio/voice?call_id={call_id}", other)) == ["Hangup"]
    assert verbs(await phone.webhook("/twilio/voice?call_id=call_0000", params)) == ["Hangup"]
    assert (await call_row(phone.platform, call_id)).provider_call_id == call_sid(7)


# --- status callbacks ------------------------------------------------------------------------------------


def history(call: Call) -> tuple[object, ...]:
    return (call.status, call.end_reason, call.ringing_at, call.started_at, call.ended_at)


async def replay(
    phone: Phone, agent_id: str, n: int, callbacks: list[tuple[str, datetime, dict[str, str]]]
) -> Call:
    sid = call_sid(n)
    call_id = await outbound_call(phone, sid, agent_id=agent_id)
    for status, at, extra in callbacks:
        response = await phone.webhook("/twilio/status", progress(sid, status, at, **extra))
        assert response.status_code == 204, response.text
    return await call_row(phone.platform, call_id)


@pytest.mark.parametrize(
    "events",
    [
        pytest.param(
            [
                ("initiated", T0, {}),
                ("ringing", T0 + timedelta(seconds=2), {}),
                ("in-progress", T0 + timedelta(seconds=9), {}),
                ("completed", T0 + timedelta(seconds=70), {"CallDuration": "61"}),
            ],
            id="answered",
        ),
        pytest.param(
            [
                ("initiated", T0, {}),
                ("ringing", T0 + timedelta(seconds=1), {}),
                ("busy", T0 + timedelta(seconds=3), {}),
            ],
            id="busy",
        ),
        pytest.param(
            [
                ("initiated", T0, {}),
                ("ringing", T0 + timedelta(seconds=1), {}),
                ("no-answer", T0 + timedelta(seconds=31), {}),
            ],
            id="no-answer",
        ),
        pytest.param(
            [("initiated", T0, {}), ("failed", T0 + timedelta(seconds=1), {"SipResponseCode": "404"})],
            id="failed",
        ),
    ],
)
async def test_status_callbacks_in_any_order_and_repeated_leave_the_same_history(
    phone: Phone, events: list[tuple[str, datetime, dict[str, str]]]
) -> None:
    agent_id = await phone.agent()
    expected = history(await replay(phone, agent_id, 1, events))
    shuffler = random.Random(8)
    for n in range(2, 8):
        shuffled = events + events  # every callback twice: Twilio retries on a slow answer
        shuffler.shuffle(shuffled)
        assert history(await replay(phone, agent_id, n, shuffled)) == expected, [s for s, _, _ in shuffled]
    status, reason, ringing, started, ended = expected
    at = {name: when for name, when, _ in events}
    assert (ringing, started, ended) == (at.get("ringing"), at.get("in-progress"), at[events[-1][0]])
    final = {"completed": "completed", "busy": "busy", "no-answer": "no_answer", "failed": "failed"}
    assert status == final[events[-1][0]]
    if status == "failed":
        assert reason == "carrier_sip_404"


async def test_a_callback_that_contradicts_the_history_is_acknowledged_and_ignored(phone: Phone) -> None:
    agent_id = await phone.agent()
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=agent_id)
    await phone.webhook("/twilio/status", progress(sid, "in-progress", T0))
    await phone.webhook("/twilio/status", progress(sid, "completed", T0 + timedelta(seconds=5)))
    late = await phone.webhook("/twilio/status", progress(sid, "busy", T0 + timedelta(seconds=6)))
    assert late.status_code == 204, "answered, so Twilio does not retry it forever"
    call = await call_row(phone.platform, call_id)
    assert (call.status, call.ended_at) == ("completed", T0 + timedelta(seconds=5))

    unknown = await phone.webhook("/twilio/status", progress(call_sid(99), "ringing", T0))
    assert unknown.status_code == 204
    odd = await phone.webhook("/twilio/status", progress(sid, "teleported", T0))
    assert odd.status_code == 204


async def test_a_status_callback_that_beats_the_dialer_finds_its_call_by_id(phone: Phone) -> None:
    """Twilio may report progress before the REST response that names the CallSid was stored."""
    agent_id = await phone.agent()
    call_id = await outbound_call(phone, None, agent_id=agent_id)
    response = await phone.webhook(f"/twilio/status?call_id={call_id}", progress(call_sid(3), "ringing", T0))
    assert response.status_code == 204
    call = await call_row(phone.platform, call_id)
    assert (call.status, call.provider_call_id, call.ringing_at) == ("ringing", call_sid(3), T0)


async def test_the_end_of_an_attempt_settles_its_outbound_job(phone: Phone) -> None:
    agent_id = await phone.agent()
    org = phone.platform.default_org_id
    job_id = new_id("job")
    async with phone.platform.db.session() as session:
        session.add(
            OutboundJob(
                id=job_id,
                org_id=org,
                agent_id=agent_id,
                to_number=CALLER,
                from_number=NUMBER,
                status="dialing",
                priority=0,
                attempts=1,
                max_attempts=3,
                next_attempt_at=utcnow(),
                window_start="00:00",
                window_end="24:00",
                time_zone="UTC",
                metadata_={},
            )
        )
    sid = call_sid(5)
    call_id = await outbound_call(phone, sid, agent_id=agent_id, job_id=job_id)
    async with phone.platform.db.session() as session:
        job = await session.get(OutboundJob, job_id)
        assert job is not None
        job.last_call_id = call_id
    await phone.webhook("/twilio/status", progress(sid, "ringing", utcnow()))
    await phone.webhook("/twilio/status", progress(sid, "busy", utcnow()))
    job_view = (await phone.http.get(f"/v1/outbound-jobs/{job_id}")).json()
    assert (job_view["status"], job_view["last_outcome"]) == ("pending", "busy"), "retried later"


# --- answering machines -----------------------------------------------------------------------------------


def amd(sid: str, answered_by: str) -> dict[str, str]:
    """Asynchronous AMD's callback (https://www.twilio.com/docs/voice/answering-machine-detection)."""
    return {
        "CallSid": sid,
        "AccountSid": "AC" + "a1" * 16,
        "AnsweredBy": answered_by,
        "MachineDetectionDuration": "4120",
    }


async def test_a_machine_is_hung_up_on_by_default(phone: Phone) -> None:
    agent_id = await phone.agent()
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=agent_id)
    live = FakeLive()
    phone.runtime.sessions[(await call_row(phone.platform, call_id)).session_id] = live
    assert (await phone.webhook("/twilio/amd", amd(sid, "machine_end_beep"))).status_code == 204
    assert phone.rest.hangups == [sid]
    assert live.ended == ["answering_machine"] and live.engine.said == []
    assert (await phone.http.get(f"/v1/calls/{call_id}")).json()["answered_by"] == "machine_end_beep"

    await phone.webhook("/twilio/amd", amd(sid, "machine_end_beep"))
    assert phone.rest.hangups == [sid], "a redelivered verdict is not acted on twice"


async def test_a_machine_hears_the_agents_voicemail_message(phone: Phone) -> None:
    message = "Hi, this is Ada from the clinic: please call us back."
    agent_id = await phone.agent(telephony={"machine": "voicemail", "voicemail_message": message})
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=agent_id)
    live = FakeLive()
    phone.runtime.sessions[(await call_row(phone.platform, call_id)).session_id] = live
    await phone.webhook("/twilio/amd", amd(sid, "machine_end_silence"))
    assert live.engine.said == [(message, "voicemail_left")]
    assert phone.rest.hangups == [] and live.ended == []


async def test_a_person_is_left_to_talk(phone: Phone) -> None:
    agent_id = await phone.agent()
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=agent_id)
    for verdict in ("human", "unknown"):
        await phone.webhook("/twilio/amd", amd(sid, verdict))
    assert phone.rest.hangups == []
    assert (await call_row(phone.platform, call_id)).answered_by == "unknown"


async def test_without_twilio_configured_every_webhook_is_unavailable(
    platform: Platform, sqlite_url: str, tmp_path: Any
) -> None:
    platform.settings = Settings(_env_file=None, data_dir=tmp_path, database_url=sqlite_url)
    app = make_app(platform)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        phone = Phone(http, platform, None, None, app)  # type: ignore[arg-type]
        for path in ("/twilio/voice", "/twilio/status", "/twilio/amd"):
            assert (await phone.webhook(path, incoming(call_sid(1)))).status_code == 503


async def test_twilio_and_the_session_both_report_the_hang_up_and_the_session_says_why(phone: Phone) -> None:
    """Twilio's "completed" and the session's own end race; whichever lands first, the reason is kept."""
    agent_id = await phone.agent()
    sid = call_sid(1)
    call_id = await outbound_call(phone, sid, agent_id=agent_id)
    await phone.webhook("/twilio/status", progress(sid, "in-progress", T0))
    await phone.webhook("/twilio/status", progress(sid, "completed", T0 + timedelta(seconds=20)))
    await phone.platform.calls.set_status(call_id, "completed", reason="voicemail_left")
    call = await call_row(phone.platform, call_id)
    assert (call.status, call.end_reason, call.ended_at) == (
        "completed",
        "voicemail_left",
        T0 + timedelta(seconds=20),
    )
