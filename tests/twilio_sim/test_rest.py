"""The local Twilio's REST API through the official twilio library: shapes, errors and call control."""

from __future__ import annotations

import asyncio
from datetime import datetime

import httpx
import pytest
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped, unused-ignore]
from twilio.rest import Client  # type: ignore[import-untyped, unused-ignore]

from parley.telephony.rest import RedirectingHttpClient, TwilioRest, TwilioRestError
from parley.twilio_sim.server import TwilioSim
from tests.twilio_sim.conftest import ACCOUNT_SID, AUTH_TOKEN, AppSide

TO = "+14155550100"
FROM = "+14155550199"


async def test_create_fetch_and_hang_up_a_call(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    created = await asyncio.to_thread(
        twilio_client.calls.create, to=TO, from_=FROM, url=app_side.url("/voice")
    )
    assert created.sid.startswith("CA") and len(created.sid) == 34
    assert created.account_sid == ACCOUNT_SID
    assert (created.to, created._from, created.status) == (TO, FROM, "queued")
    assert created.direction == "outbound-api"
    assert created.to_formatted == "(415) 555-0100"
    assert isinstance(created.date_created, datetime)
    assert created.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{created.sid}.json"

    await app_side.wait_stream()
    fetched = await asyncio.to_thread(twilio_client.calls(created.sid).fetch)
    assert fetched.status == "in-progress"
    assert isinstance(fetched.start_time, datetime)

    updated = await asyncio.to_thread(twilio_client.calls(created.sid).update, status="completed")
    assert updated.sid == created.sid
    call = twilio_sim.call(created.sid)
    assert await call.wait_ended() == "completed"
    assert call.hung_up_by == "api"
    ended = await asyncio.to_thread(twilio_client.calls(created.sid).fetch)
    assert ended.status == "completed"
    assert ended.duration is not None and ended.end_time is not None


async def test_inline_twiml_runs_without_a_voice_url(twilio_sim: TwilioSim, twilio_client: Client) -> None:
    twiml = "<Response><Say>Your order has shipped.</Say><Hangup/></Response>"
    created = await asyncio.to_thread(twilio_client.calls.create, to=TO, from_=FROM, twiml=twiml)
    call = twilio_sim.call(created.sid)
    assert await call.wait_ended() == "completed"
    assert call.said == ["Your order has shipped."]
    assert call.twiml == [twiml]


async def test_errors_arrive_as_twilio_rest_exceptions(twilio_sim: TwilioSim, twilio_client: Client) -> None:
    with pytest.raises(TwilioRestException) as invalid:
        await asyncio.to_thread(twilio_client.calls.create, to="+1555", from_=FROM, url="https://x.test/v")
    assert (invalid.value.status, invalid.value.code) == (400, 21211)

    with pytest.raises(TwilioRestException) as no_url:
        await asyncio.to_thread(twilio_client.calls.create, to=TO, from_=FROM)
    assert (no_url.value.status, no_url.value.code) == (400, 21205)

    with pytest.raises(TwilioRestException) as missing:
        await asyncio.to_thread(twilio_client.calls("CA" + "0" * 32).fetch)
    assert (missing.value.status, missing.value.code) == (404, 20404)

    assert twilio_sim.base_url is not None
    intruder = Client(ACCOUNT_SID, "wrong-token", http_client=RedirectingHttpClient(twilio_sim.base_url))
    with pytest.raises(TwilioRestException) as denied:
        await asyncio.to_thread(intruder.calls.create, to=TO, from_=FROM, url="https://x.test/v")
    assert (denied.value.status, denied.value.code) == (401, 20003)
    assert twilio_sim.calls == {}


async def test_error_bodies_have_twilios_shape(twilio_sim: TwilioSim) -> None:
    async with httpx.AsyncClient(base_url=twilio_sim.base_url or "") as http:
        response = await http.post(
            f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json",
            data={"To": "not a number", "From": FROM, "Url": "https://x.test/v"},
            auth=(ACCOUNT_SID, AUTH_TOKEN),
        )
        unauthenticated = await http.get(f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls.json")
    assert response.status_code == 400
    assert response.json() == {
        "code": 21211,
        "message": "Invalid 'To' Phone Number: not a number",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == 20003


async def test_redirecting_a_call_that_is_not_live_is_refused(
    twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    twilio_sim.script(TO, ring_s=30)
    created = await asyncio.to_thread(
        twilio_client.calls.create, to=TO, from_=FROM, url="https://x.test/voice"
    )
    with pytest.raises(TwilioRestException) as refused:
        await asyncio.to_thread(
            twilio_client.calls(created.sid).update, twiml="<Response><Hangup/></Response>"
        )
    assert refused.value.code == 21220
    await asyncio.to_thread(twilio_client.calls(created.sid).update, status="canceled")
    assert await twilio_sim.call(created.sid).wait_ended() == "canceled"


async def test_messages_are_sent_and_recorded(
    app_side: AppSide, twilio_sim: TwilioSim, twilio_client: Client
) -> None:
    message = await asyncio.to_thread(
        twilio_client.messages.create,
        to=TO,
        from_=FROM,
        body="A new lead: Dana, +14155550123",
        status_callback=app_side.url("/sms"),
    )
    assert message.sid.startswith("SM") and len(message.sid) == 34
    assert (message.to, message.from_, message.status) == (TO, FROM, "queued")
    assert message.body == "A new lead: Dana, +14155550123"
    assert twilio_sim.messages[message.sid].body == message.body

    callbacks = await app_side.wait_for("/sms", 2)
    assert [c.params["MessageStatus"] for c in callbacks] == ["sent", "delivered"]
    assert all(c.signed for c in callbacks)
    fetched = await asyncio.to_thread(twilio_client.messages(message.sid).fetch)
    assert fetched.status == "delivered"

    with pytest.raises(TwilioRestException) as invalid:
        await asyncio.to_thread(twilio_client.messages.create, to="12", from_=FROM, body="hi")
    assert invalid.value.code == 21211


async def test_parleys_rest_client_against_the_sim(app_side: AppSide, twilio_sim: TwilioSim) -> None:
    """H3's ``TwilioRest`` places, transfers and hangs up calls and sends SMS here as it would at Twilio."""
    assert twilio_sim.base_url is not None
    rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=twilio_sim.base_url)
    sid = await rest.place_call(
        to=TO, from_=FROM, url=app_side.url("/voice"), status_callback=app_side.url("/status")
    )
    await app_side.wait_stream()
    await rest.transfer(sid, "+14155550142")
    call = twilio_sim.call(sid)
    assert await call.wait_ended() == "completed"
    assert [t.target for t in call.transfers] == ["+14155550142"]

    assert (await rest.send_sms(TO, FROM, "hello")).startswith("SM")
    with pytest.raises(TwilioRestError) as invalid:
        await rest.place_call(to="+1555", from_=FROM, url=app_side.url("/voice"), status_callback="")
    assert invalid.value.code == 21211
