"""A coached room's phone legs on the books: the minutes Twilio bills for each call Parley dialed into a
room are the room call's telephony (its costs, ``/v1/usage``), and each leg — CallSid, number dialed,
caller id, how it ended, how long — is kept on the call (``metadata.phone_legs``).

Parley and the local Twilio run whole (``tests/phone/conftest.py``): the legs are dialed through the API,
answered, streamed into the room and ended by the local Twilio, whose status callbacks are signed as
Twilio's are. A leg "answered 42 s ago" is the local Twilio's call with its answer moved back 42 s.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from twilio.request_validator import RequestValidator  # type: ignore[import-untyped, unused-ignore]

from parley.engine.events import now
from parley.platform.pricing import PricedLine, money
from parley.server.room_phone import ENDED
from parley.twilio_sim.caller import SimulatedCaller
from parley.twilio_sim.resources import SimCall, Webhook
from tests.coaching.test_phone_leg import coached_agent, open_room, room_participants
from tests.phone.conftest import AUTH_TOKEN, PARLEY_NUMBER, PERSON, PhoneLab, phone_lab

TALKED_S = 42
"""How long the answered leg lasted, as Twilio reports it (``CallDuration``): one started minute."""


def outbound_minute(lab: PhoneLab) -> PricedLine:
    """One minute of an outbound Twilio call at this server's configured prices."""
    platform = lab.runtime.platform
    assert platform is not None
    return platform.pricing.price("telephony_minutes", "twilio", "outbound", 1.0)


async def dial(lab: PhoneLab, room_id: str, role: str = "customer") -> tuple[str, SimCall]:
    dialed = await lab.api.post(f"/v1/rooms/{room_id}/calls", json={"to": PERSON, "role": role})
    assert dialed.status_code == 201, dialed.text
    return str(dialed.json()["participant_id"]), lab.twilio.call(dialed.json()["call_sid"])


async def streamed(lab: PhoneLab, room_id: str, participant_id: str, leg: SimCall) -> SimulatedCaller:
    """The callee answered and its Media Stream is a connected participant of the room; its phone."""
    phone = await leg.wait_connected()
    async with asyncio.timeout(10):
        while not (await room_participants(lab, room_id))[participant_id]["connected"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return phone


def answered_long_ago(leg: SimCall, seconds: float = TALKED_S) -> None:
    """The local Twilio times a call from its answer: this one was answered ``seconds`` ago."""
    leg.answered_at = now() - seconds


def final_callback(leg: SimCall) -> Webhook:
    """The status callback the local Twilio sent Parley when the leg ended (and Parley's answer)."""
    ends = [w for w in leg.webhooks_of("status") if w.params["CallStatus"] in ENDED]
    assert len(ends) == 1, [w.params for w in leg.webhooks_of("status")]
    return ends[0]


async def room_call_id(lab: PhoneLab, room_id: str) -> str:
    return str((await lab.api.get(f"/v1/rooms/{room_id}")).json()["call_id"])


async def end_room(lab: PhoneLab, room_id: str) -> None:
    ended = await lab.api.post(f"/v1/rooms/{room_id}/end")
    assert ended.status_code == 200, ended.text


def telephony(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in record["costs"]["lines"] if line["kind"] == "telephony_minutes"]


async def test_an_answered_leg_is_the_room_calls_telephony_and_is_kept_on_the_call(tmp_path: Path) -> None:
    async with phone_lab(tmp_path) as lab:
        room_id = await open_room(lab, coached_agent())
        call_id = await room_call_id(lab, room_id)
        participant_id, leg = await dial(lab, room_id)
        phone = await streamed(lab, room_id, participant_id, leg)
        answered_long_ago(leg)
        await phone.hang_up()
        assert await leg.wait_ended() == "completed"
        completed = final_callback(leg)
        assert completed.status_code == 204
        reported = int(completed.params["CallDuration"])
        assert TALKED_S <= reported < 60, "the local Twilio reports the 42 s the leg was answered for"

        live = (await lab.api.get(f"/v1/calls/{call_id}")).json()
        assert live["ended_at"] is None and live["costs"]["provisional"] is True
        assert [line["quantity"] for line in telephony(live)] == [1.0], "the estimate counts the leg"

        await end_room(lab, room_id)
        record = await lab.call_record(call_id)
        usage = (await lab.api.get("/v1/usage")).json()
        minute = outbound_minute(lab)

    [line] = telephony(record)
    assert (line["provider"], line["model"], line["quantity"]) == ("twilio", "outbound", 1.0)
    assert Decimal(str(line["cost_usd"])) == money(minute.cost_micros) > 0, "1 minute at the outbound price"
    assert record["costs"]["provisional"] is False
    assert record["metadata"]["phone_legs"] == [
        {
            "call_sid": leg.sid,
            "participant_id": participant_id,
            "role": "customer",
            "to": PERSON,
            "from": PARLEY_NUMBER,
            "status": "completed",
            "duration_s": reported,
        }
    ]
    [used] = [u for u in usage["lines"] if u["kind"] == "telephony_minutes"]
    assert (used["provider"], used["model"], used["quantity"], used["calls"]) == (
        "twilio",
        "outbound",
        1.0,
        1,
    )


async def test_a_busy_leg_costs_nothing_and_is_kept_as_busy(tmp_path: Path) -> None:
    async with phone_lab(tmp_path) as lab:
        room_id = await open_room(lab, coached_agent())
        call_id = await room_call_id(lab, room_id)
        lab.twilio.script(PERSON, outcomes=["busy"])
        participant_id, leg = await dial(lab, room_id)
        assert await leg.wait_ended() == "busy"
        assert final_callback(leg).status_code == 204
        await end_room(lab, room_id)
        record = await lab.call_record(call_id)

    assert telephony(record) == [], "nobody answered: no minutes"
    [kept] = record["metadata"]["phone_legs"]
    assert (kept["call_sid"], kept["participant_id"], kept["status"]) == (leg.sid, participant_id, "busy")
    assert (kept["to"], kept["from"]) == (PERSON, PARLEY_NUMBER)


def hold_leg_ends(lab: PhoneLab, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """The local Twilio's final status callbacks wait (as a slow carrier's do) until the event is set."""
    release = asyncio.Event()
    send = lab.twilio._send

    async def held(
        records: list[Webhook], kind: Any, url: str, method: str, params: dict[str, str]
    ) -> Webhook:
        if kind == "status" and params.get("CallStatus") in ENDED:
            await release.wait()
        return await send(records, kind, url, method, params)

    monkeypatch.setattr(lab.twilio, "_send", held)
    return release


async def test_a_leg_ending_after_the_room_prices_the_call_again_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with phone_lab(tmp_path) as lab:
        room_id = await open_room(lab, coached_agent())
        call_id = await room_call_id(lab, room_id)
        participant_id, leg = await dial(lab, room_id)
        await streamed(lab, room_id, participant_id, leg)
        release = hold_leg_ends(lab, monkeypatch)
        answered_long_ago(leg)
        await end_room(lab, room_id)  # which hangs up the phone; Twilio's word of it comes later
        before = await lab.call_record(call_id)
        assert telephony(before) == [] and before["costs"]["provisional"] is False, "priced without it"
        assert (await lab.api.get(f"/v1/rooms/{room_id}")).status_code == 404, "the room is gone"

        release.set()
        assert await leg.wait_ended() == "completed"
        completed = final_callback(leg)
        assert completed.status_code == 204
        after = (await lab.api.get(f"/v1/calls/{call_id}")).json()
        assert [line["quantity"] for line in telephony(after)] == [1.0]

        # Twilio redelivers the same callback: nothing is billed twice.
        headers = {"X-Twilio-Signature": completed.signature}
        again = await lab.api.post(completed.url, data=completed.params, headers=headers)
        assert again.status_code == 204
        # Forged ones are refused: unsigned, or a longer call under the real signature.
        unsigned = await lab.api.post(completed.url, data=completed.params)
        longer = {**completed.params, "CallDuration": "3600"}
        forged = await lab.api.post(completed.url, data=longer, headers=headers)
        assert (unsigned.status_code, forged.status_code) == (403, 403)
        # Signed, but not what Twilio sends: a malformed duration bills nothing more.
        odd = {**completed.params, "CallDuration": "1e9"}
        signed = {"X-Twilio-Signature": RequestValidator(AUTH_TOKEN).compute_signature(completed.url, odd)}
        assert (await lab.api.post(completed.url, data=odd, headers=signed)).status_code == 204
        final = (await lab.api.get(f"/v1/calls/{call_id}")).json()
        usage = (await lab.api.get("/v1/usage")).json()

    assert [line["quantity"] for line in telephony(final)] == [1.0]
    assert final["costs"] == after["costs"]
    [kept] = final["metadata"]["phone_legs"]
    assert (kept["call_sid"], kept["status"]) == (leg.sid, "completed")
    assert kept["duration_s"] == int(completed.params["CallDuration"]) >= TALKED_S
    assert "coaching" in final["metadata"], "the room's own summary is kept beside it"
    [used] = [u for u in usage["lines"] if u["kind"] == "telephony_minutes"]
    assert used["quantity"] == 1.0


async def test_a_room_may_not_be_made_with_phone_legs_of_its_own(tmp_path: Path) -> None:
    async with phone_lab(tmp_path) as lab:
        config = coached_agent()
        await lab.add_agent(config)
        legs = [{"call_sid": "CA" + "0" * 32, "status": "completed", "duration_s": 6000}]
        made = await lab.api.post("/v1/rooms", json={"agent": config.name, "metadata": {"phone_legs": legs}})
    assert made.status_code == 422, made.text
    assert "phone_legs" in made.text
