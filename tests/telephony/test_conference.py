"""Parley's conference coaching against the in-process local Twilio, through the official client: a coach
added in listen mode, switched to whisper and barge, removed; what each party heard is measured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from parley.telephony.conference import (
    CoacheeUnavailable,
    ConferenceNotFound,
    ModeError,
    TwilioConferences,
    mode_fields,
)
from parley.telephony.rest import TwilioRest
from parley.twilio_sim.conference import SimParticipant
from parley.twilio_sim.server import TwilioSim, serving
from tests.telephony.conftest import ACCOUNT_SID, AUTH_TOKEN
from tests.twilio_sim.listening import HEARD, SILENT, heard_level, heard_next, tone_level

NUMBER = "+14155550100"
CUSTOMER, REP, COACH = "+12025550111", "+14155550122", "+14155550133"
CUSTOMER_HZ, REP_HZ, COACH_HZ, BEEP_HZ = 440.0, 700.0, 1900.0, 1000.0
ROOM = "coached-call-7"


@pytest.fixture
async def sim() -> AsyncIterator[TwilioSim]:
    async with serving(TwilioSim(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN)) as running:
        running.script(CUSTOMER, say=(f"tone:{CUSTOMER_HZ:g}:60",))
        running.script(REP, say=(f"tone:{REP_HZ:g}:60",))
        running.script(COACH, say=(f"tone:{COACH_HZ:g}:60",))
        yield running


@pytest.fixture
def conferences(sim: TwilioSim) -> TwilioConferences:
    assert sim.base_url is not None
    return TwilioConferences(TwilioRest(ACCOUNT_SID, AUTH_TOKEN, api_base_url=sim.base_url))


async def _call_in(sim: TwilioSim, conferences: TwilioConferences, to: str) -> SimParticipant:
    """A party on the call (customer, rep) put in the room through the REST API, as a dialer would."""
    room = conferences.rest.client.conferences(ROOM)
    created = await asyncio.to_thread(room.participants.create, from_=NUMBER, to=to, beep="false")
    conference = sim.conferences.named(ROOM)
    assert conference is not None
    return await conference.participant(created.call_sid).wait_joined()


async def test_a_coach_listens_whispers_barges_and_leaves(
    sim: TwilioSim, conferences: TwilioConferences
) -> None:
    customer = await _call_in(sim, conferences, CUSTOMER)
    rep = await _call_in(sim, conferences, REP)
    conference = customer.conference

    added = await conferences.add_coach(ROOM, to=COACH, from_=NUMBER, coach_call_sid=rep.sid, mode="listen")
    assert (added.mode, added.muted, added.coaching, added.label) == ("listen", True, False, "coach")
    assert added.conference_sid == conference.sid
    coach = await conference.participant(added.call_sid).wait_joined()
    assert coach.joined_tick is not None
    arrival = (coach.joined_tick, coach.joined_tick + 10)
    await conference.wait_tick(arrival[1])
    assert tone_level(customer.heard_audio(*arrival), BEEP_HZ) < SILENT  # the coach arrives unannounced

    rep_heard, customer_heard, coach_heard = await heard_next(conference, rep, customer, coach)
    assert tone_level(rep_heard, COACH_HZ) < SILENT and tone_level(customer_heard, COACH_HZ) < SILENT
    assert heard_level(coach_heard, CUSTOMER_HZ) > HEARD and heard_level(coach_heard, REP_HZ) > HEARD

    whisper = await conferences.set_mode(ROOM, coach.sid, "whisper", coach_call_sid=rep.sid)
    assert (whisper.mode, whisper.call_sid_to_coach) == ("whisper", rep.sid)
    rep_heard, customer_heard, coach_heard = await heard_next(conference, rep, customer, coach)
    assert heard_level(rep_heard, COACH_HZ) > HEARD
    assert tone_level(customer_heard, COACH_HZ) < SILENT  # nothing of the whisper reaches the customer
    assert heard_level(customer_heard, REP_HZ) > HEARD
    assert heard_level(coach_heard, CUSTOMER_HZ) > HEARD

    barge = await conferences.set_mode(conference.sid, coach.sid, "barge")
    assert (barge.mode, barge.coaching, barge.call_sid_to_coach) == ("barge", False, None)
    rep_heard, customer_heard = await heard_next(conference, rep, customer)
    assert heard_level(rep_heard, COACH_HZ) > HEARD and heard_level(customer_heard, COACH_HZ) > HEARD

    assert (await conferences.set_mode(ROOM, coach.sid, "listen")).mode == "listen"
    rep_heard, customer_heard = await heard_next(conference, rep, customer)
    assert tone_level(rep_heard, COACH_HZ) < SILENT and tone_level(customer_heard, COACH_HZ) < SILENT

    assert (await conferences.participant(ROOM, "coach")).call_sid == coach.sid
    await conferences.remove(ROOM, coach.sid)
    assert await coach.call.wait_ended() == "completed"
    assert {p.call_sid for p in await conferences.participants(ROOM)} == {customer.sid, rep.sid}
    assert conference.status == "in-progress"  # the call goes on without the coach

    await conferences.end(ROOM)
    assert await customer.call.wait_ended() == "completed" and await rep.call.wait_ended() == "completed"
    assert (conference.status, conference.reason_conference_ended) == (
        "completed",
        "conference-ended-via-api",
    )
    with pytest.raises(ConferenceNotFound):
        await conferences.resolve(ROOM)  # a completed conference's name names nothing live


async def test_a_coach_can_join_already_whispering(sim: TwilioSim, conferences: TwilioConferences) -> None:
    customer = await _call_in(sim, conferences, CUSTOMER)
    rep = await _call_in(sim, conferences, REP)
    added = await conferences.add_coach(
        customer.conference.sid, to=COACH, from_=NUMBER, coach_call_sid=rep.sid, mode="whisper", label=None
    )
    assert (added.mode, added.call_sid_to_coach, added.label) == ("whisper", rep.sid, None)
    coach = await customer.conference.participant(added.call_sid).wait_joined()
    rep_heard, customer_heard = await heard_next(customer.conference, rep, customer)
    assert heard_level(rep_heard, COACH_HZ) > HEARD and tone_level(customer_heard, COACH_HZ) < SILENT
    assert coach.coaching


async def test_refusals_keep_twilios_codes(sim: TwilioSim, conferences: TwilioConferences) -> None:
    with pytest.raises(ConferenceNotFound) as no_room:
        await conferences.set_mode("no-such-room", "CA" + "0" * 32, "barge")
    assert no_room.value.code == 20404
    with pytest.raises(ConferenceNotFound) as no_sid:
        await conferences.end("CF" + "0" * 32)
    assert (no_sid.value.code, no_sid.value.status) == (20404, 404)

    await _call_in(sim, conferences, CUSTOMER)
    with pytest.raises(CoacheeUnavailable) as absent:
        await conferences.add_coach(
            ROOM, to=COACH, from_=NUMBER, coach_call_sid="CA" + "1" * 32, mode="whisper"
        )
    assert absent.value.code == 16028
    with pytest.raises(ConferenceNotFound) as nobody:
        await conferences.set_mode(ROOM, "CA" + "2" * 32, "listen")
    assert nobody.value.code == 20404

    with pytest.raises(ModeError):
        await conferences.set_mode(ROOM, "CA" + "2" * 32, "whisper")  # whisper to whom?
    with pytest.raises(ModeError):
        await conferences.add_coach(ROOM, to=COACH, from_=NUMBER, coach_call_sid=None, mode="speak")
    assert sim.calls_to(COACH) == []  # nothing was dialed for a refused coach


def test_modes_map_onto_the_participant_fields() -> None:
    assert mode_fields("listen", "CA1") == {"muted": True, "coaching": False}
    assert mode_fields("whisper", "CA1") == {"muted": False, "coaching": True, "call_sid_to_coach": "CA1"}
    assert mode_fields("barge", None) == {"muted": False, "coaching": False}
