"""What the local Twilio does with a call: callbacks in order, TwiML, the Media Stream, AMD, inbound calls."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from twilio.rest import Client  # type: ignore[import-untyped, unused-ignore]

from parley.audio.codecs import ulaw_encode
from parley.twilio_sim.server import TwilioSim
from tests.twilio_sim.conftest import ACCOUNT_SID, AppSide, until

TO = "+14155550100"
FROM = "+14155550199"
EVENTS = ["initiated", "ringing", "answered", "completed"]


async def dial(client: Client, app_side: AppSide, **options: Any) -> str:
    params: dict[str, Any] = {
        "to": TO,
        "from_": FROM,
        "url": app_side.url("/voice"),
        "status_callback": app_side.url("/status"),
        "status_callback_event": EVENTS,
    }
    params.update(options)
    call = await asyncio.to_thread(client.calls.create, **params)
    return str(call.sid)


@pytest.mark.parametrize(
    ("outcome", "statuses"),
    [
        ("answer", ["initiated", "ringing", "in-progress", "completed"]),
        ("busy", ["initiated", "ringing", "busy"]),
        ("no-answer", ["initiated", "ringing", "no-answer"]),
        ("failed", ["initiated", "failed"]),
    ],
)
async def test_status_callbacks_are_signed_and_in_order(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client, outcome: str, statuses: list[str]
) -> None:
    twilio_sim.script(TO, outcomes=[outcome])
    app_side.hold_stream_s = 0.2
    sid = await dial(twilio_client, app_side)
    assert await twilio_sim.call(sid).wait_ended() == statuses[-1]

    callbacks = app_side.at("/status")
    assert [c.params["CallStatus"] for c in callbacks] == statuses
    assert [c.params["SequenceNumber"] for c in callbacks] == [str(i) for i in range(len(statuses))]
    assert all(c.signed for c in callbacks)
    for callback in callbacks:
        assert callback.params["CallSid"] == sid
        assert callback.params["AccountSid"] == ACCOUNT_SID
        assert (callback.params["From"], callback.params["To"]) == (FROM, TO)
        assert callback.params["Direction"] == "outbound-api"
        assert callback.params["CallbackSource"] == "call-progress-events"
    assert "CallDuration" in callbacks[-1].params
    voice = app_side.at("/voice")
    assert len(voice) == (1 if outcome == "answer" else 0)
    if voice:
        assert voice[0].signed and voice[0].params["CallStatus"] == "in-progress"


async def test_only_the_final_status_without_events(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.script(TO, outcomes=["busy"])
    sid = await dial(twilio_client, app_side, status_callback_event=None)
    await twilio_sim.call(sid).wait_ended()
    assert [c.params["CallStatus"] for c in app_side.at("/status")] == ["busy"]


async def test_each_call_consumes_one_outcome(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.script(TO, outcomes=["busy", "no-answer"])
    app_side.hold_stream_s = 0.1
    finals = []
    for _ in range(3):
        sid = await dial(twilio_client, app_side)
        finals.append(await twilio_sim.call(sid).wait_ended())
    assert finals == ["busy", "no-answer", "completed"]  # then the callee answers


async def test_the_stream_carries_the_call_until_parley_closes_it(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    sid = await dial(twilio_client, app_side)
    stream = await app_side.wait_stream()
    assert stream.signed
    assert stream.start is not None
    assert stream.start["callSid"] == sid and stream.start["accountSid"] == ACCOUNT_SID
    assert stream.start["customParameters"] == {"call_id": "c1"}
    assert stream.start["mediaFormat"] == {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}

    call = twilio_sim.call(sid)
    caller = await call.wait_connected()
    await until(lambda: stream.events.count("media") > 5)  # Twilio streams the line continuously
    assert call.status == "in-progress"

    app_side.hold_stream_s = 0.0  # the next message it reads makes the endpoint close the socket
    assert await call.wait_ended() == "completed"
    assert call.hung_up_by == "app"
    assert caller.ended_by == "server"
    assert app_side.at("/status")[-1].params["CallStatus"] == "completed"


async def test_callee_hanging_up_stops_the_stream(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.script(TO, hang_up_after_s=0.4)
    sid = await dial(twilio_client, app_side)
    stream = await app_side.wait_stream()
    call = twilio_sim.call(sid)
    assert await call.wait_ended() == "completed"
    assert call.hung_up_by == "callee"
    await asyncio.wait_for(stream.closed.wait(), 5)
    assert stream.events[-1] == "stop"


async def test_a_human_callee_answers_after_the_agent_speaks(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.script(TO, say=["tone:500:0.4"], reply_gap_s=0.3, wait_for_agent_s=30)
    greeting = 0.5 * np.sin(2 * np.pi * 300 * np.arange(4000) / 8000) * 32767
    app_side.speak = ulaw_encode(greeting.astype(np.int16))  # half a second of "agent" voice
    sid = await dial(twilio_client, app_side)
    stream = await app_side.wait_stream()
    caller = await twilio_sim.call(sid).wait_connected()
    await until(lambda: bool(caller.spoken))
    heard = caller.heard_voice(0.0)
    assert heard is not None
    assert caller.spoken[0].start > heard[1]  # it let the agent finish first
    await until(lambda: stream.voiced_s() >= 0.35)  # Parley heard the answer


async def test_transfer_by_rest_redirect_ends_the_stream_and_dials(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.transfer_hold_s = 0.2
    sid = await dial(twilio_client, app_side)
    stream = await app_side.wait_stream()
    twiml = "<Response><Dial><Number>+14155550142</Number></Dial></Response>"
    await asyncio.to_thread(twilio_client.calls(sid).update, twiml=twiml)
    await asyncio.wait_for(stream.closed.wait(), 5)
    assert stream.events[-1] == "stop"
    call = twilio_sim.call(sid)
    assert await call.wait_ended() == "completed"
    assert [(t.target, t.kind, t.status) for t in call.transfers] == [("+14155550142", "number", "completed")]
    assert call.twiml[-1] == twiml


async def test_redirect_to_a_url_fetches_new_twiml(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    sid = await dial(twilio_client, app_side)
    await app_side.wait_stream()
    app_side.twiml = "<Response><Say>Goodbye</Say></Response>"
    await asyncio.to_thread(twilio_client.calls(sid).update, url=app_side.url("/next"))
    call = twilio_sim.call(sid)
    assert await call.wait_ended() == "completed"
    assert call.said == ["Goodbye"]
    nexts = app_side.at("/next")
    assert len(nexts) == 1 and nexts[0].signed and nexts[0].params["CallStatus"] == "in-progress"


async def test_async_amd_reports_a_machine_after_its_greeting(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.script(TO, answered_by="machine_end_beep", say=["tone:440:0.6"])
    sid = await dial(
        twilio_client,
        app_side,
        machine_detection="DetectMessageEnd",
        async_amd="true",
        async_amd_status_callback=app_side.url("/amd"),
    )
    stream = await app_side.wait_stream()
    assert "AnsweredBy" not in app_side.at("/voice")[0].params  # async: the TwiML runs at once
    (amd,) = await app_side.wait_for("/amd")
    assert amd.signed
    assert amd.params["AnsweredBy"] == "machine_end_beep"
    assert amd.params["CallSid"] == sid
    assert amd.params["MachineDetectionDuration"] == "1100"  # greeting 0.6 s + beep 0.5 s
    await until(lambda: stream.voiced_s() >= 0.85)  # greeting and beep: 1.1 s of tone, 92% of it loud
    call = twilio_sim.call(sid)
    assert call.answered_by == "machine_end_beep"
    await asyncio.to_thread(twilio_client.calls(sid).update, status="completed")
    await call.wait_ended()


async def test_sync_amd_tells_the_voice_url(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.script(TO, answered_by="human", amd_s=0.1)
    app_side.twiml = "<Response><Hangup/></Response>"
    sid = await dial(twilio_client, app_side, machine_detection="Enable")
    await twilio_sim.call(sid).wait_ended()
    (voice,) = app_side.at("/voice")
    assert voice.params["AnsweredBy"] == "human"
    fetched = await asyncio.to_thread(twilio_client.calls(sid).fetch)
    assert fetched.answered_by == "human"


async def test_inbound_call_reaches_the_voice_url(app_side: AppSide, twilio_sim: TwilioSim) -> None:
    call = twilio_sim.place_inbound(FROM, TO, app_side.url("/voice"), status_callback=app_side.url("/status"))
    stream = await app_side.wait_stream()
    (voice,) = app_side.at("/voice")
    assert voice.signed
    assert voice.params["CallStatus"] == "ringing"
    assert voice.params["Direction"] == "inbound"
    assert (voice.params["From"], voice.params["To"]) == (FROM, TO)
    assert stream.start is not None and stream.start["callSid"] == call.sid
    assert call.status == "in-progress"
    app_side.hold_stream_s = 0.0
    assert await call.wait_ended() == "completed"
    assert [c.params["CallStatus"] for c in app_side.at("/status")] == ["completed"]


async def test_inbound_call_rejected_as_busy_is_never_answered(
    app_side: AppSide, twilio_sim: TwilioSim
) -> None:
    app_side.twiml = '<Response><Reject reason="busy"/></Response>'
    call = twilio_sim.place_inbound(FROM, TO, app_side.url("/voice"))
    assert await call.wait_ended() == "busy"
    assert not call.answered


async def test_broken_twiml_ends_the_call_with_an_error(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    app_side.twiml = "<Response><Connect></Connect>"
    sid = await dial(twilio_client, app_side)
    call = twilio_sim.call(sid)
    assert await call.wait_ended() == "completed"
    assert call.errors and call.errors[0].startswith("12100")


async def test_sim_calls_lists_what_happened(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    app_side.hold_stream_s = 0.1
    sid = await dial(twilio_client, app_side)
    await twilio_sim.call(sid).wait_ended()
    async with httpx.AsyncClient(base_url=twilio_sim.base_url or "") as http:
        body = (await http.get("/sim/calls")).json()
    (record,) = body["calls"]
    assert record["sid"] == sid
    assert record["statuses"] == ["initiated", "ringing", "in-progress", "completed"]
    assert record["twiml"] and "<Connect>" in record["twiml"][0]
    assert record["streams"][0]["parameters"] == {"call_id": "c1"}
    assert record["streams"][0]["ended_by"] == "server"
