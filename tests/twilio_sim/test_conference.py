"""The local Twilio's conferences through the official twilio library: who hears whom (whisper, listen,
barge, measured on what each participant heard), ``<Dial><Conference>``, status callbacks, REST shapes and
errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from twilio.base.exceptions import TwilioRestException  # type: ignore[import-untyped, unused-ignore]
from twilio.rest import Client  # type: ignore[import-untyped, unused-ignore]

from parley.twilio_sim.conference import SimConference, SimParticipant
from parley.twilio_sim.server import TwilioSim
from parley.twilio_sim.twiml import ConferenceNoun, Dial, TwimlError, parse_twiml
from tests.twilio_sim.conftest import ACCOUNT_SID, AppSide, until
from tests.twilio_sim.listening import HEARD, SILENT, heard_level, heard_next, tone_level

NUMBER = "+14155550100"
CUSTOMER = "+12025550111"
REP = "+14155550122"
COACH = "+14155550133"
ROOM = "deal-42"
CUSTOMER_HZ, REP_HZ, COACH_HZ, BEEP_HZ = 440.0, 700.0, 1900.0, 1000.0


def _room_twiml(app_side: AppSide, **attributes: str) -> str:
    attrs = {
        "beep": "false",
        "statusCallback": app_side.url("/status"),
        "statusCallbackEvent": "start end join leave mute hold modify",
    } | attributes
    rendered = " ".join(f'{name}="{value}"' for name, value in attrs.items())
    return f"<Response><Dial><Conference {rendered}>{ROOM}</Conference></Dial></Response>"


def _script_tones(sim: TwilioSim) -> None:
    sim.script(CUSTOMER, say=(f"tone:{CUSTOMER_HZ:g}:60",))
    sim.script(REP, say=(f"tone:{REP_HZ:g}:60",))
    sim.script(COACH, say=(f"tone:{COACH_HZ:g}:60",))


async def _run(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(function, *args, **kwargs)


async def _customer_and_rep(
    sim: TwilioSim, client: Client, app_side: AppSide
) -> tuple[SimConference, SimParticipant, SimParticipant]:
    """The customer calls in and is put in the conference by TwiML; the rep is added by the REST API."""
    _script_tones(sim)
    app_side.twiml = _room_twiml(app_side)
    customer_call = sim.place_inbound(CUSTOMER, NUMBER, app_side.url("/voice"))

    def customer_in() -> bool:
        room = sim.conferences.named(ROOM)
        return room is not None and customer_call.sid in room.participants

    await until(customer_in)  # the voice webhook answers, then the call dials the room
    conference = sim.conferences.named(ROOM)
    assert conference is not None
    customer_leg = await conference.participant(customer_call.sid).wait_joined()
    rep = await _run(
        client.conferences(ROOM).participants.create, from_=NUMBER, to=REP, label="rep", beep="false"
    )
    rep_leg = await conference.participant(rep.call_sid).wait_joined()
    return conference, customer_leg, rep_leg


async def test_whisper_reaches_the_rep_alone_listen_reaches_nobody_barge_reaches_everyone(
    twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide
) -> None:
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    assert conference.status == "in-progress"

    created = await _run(
        twilio_client.conferences(conference.sid).participants.create,
        from_=NUMBER,
        to=COACH,
        label="coach",
        coaching=True,
        call_sid_to_coach=rep.sid,
        beep="false",
    )
    assert (created.coaching, created.call_sid_to_coach, created.muted) == (True, rep.sid, False)
    coach = await conference.participant(created.call_sid).wait_joined()

    # whisper: the rep hears the coach, the customer does not; the coach hears both of them
    rep_heard, customer_heard, coach_heard = await heard_next(conference, rep, customer, coach)
    assert heard_level(rep_heard, COACH_HZ) > HEARD
    assert heard_level(rep_heard, CUSTOMER_HZ) > HEARD
    assert tone_level(customer_heard, COACH_HZ) < SILENT
    assert heard_level(customer_heard, REP_HZ) > HEARD
    assert heard_level(coach_heard, CUSTOMER_HZ) > HEARD and heard_level(coach_heard, REP_HZ) > HEARD

    # listen: muted, heard by nobody, still hearing everyone
    muted = await _run(
        twilio_client.conferences(conference.sid).participants(coach.sid).update, muted=True, coaching=False
    )
    assert (muted.muted, muted.coaching, muted.call_sid_to_coach) == (True, False, None)
    rep_heard, customer_heard, coach_heard = await heard_next(conference, rep, customer, coach)
    assert tone_level(rep_heard, COACH_HZ) < SILENT
    assert tone_level(customer_heard, COACH_HZ) < SILENT
    assert heard_level(coach_heard, CUSTOMER_HZ) > HEARD and heard_level(coach_heard, REP_HZ) > HEARD

    # barge: everyone hears the coach
    await _run(twilio_client.conferences(conference.sid).participants("coach").update, muted=False)
    rep_heard, customer_heard = await heard_next(conference, rep, customer)
    assert heard_level(rep_heard, COACH_HZ) > HEARD
    assert heard_level(customer_heard, COACH_HZ) > HEARD

    # back to whisper through the update: the customer loses the coach again
    await _run(
        twilio_client.conferences(conference.sid).participants(coach.sid).update,
        coaching=True,
        call_sid_to_coach=rep.sid,
    )
    rep_heard, customer_heard = await heard_next(conference, rep, customer)
    assert heard_level(rep_heard, COACH_HZ) > HEARD
    assert tone_level(customer_heard, COACH_HZ) < SILENT


async def test_hold_takes_a_participant_out_of_the_mix_both_ways(
    twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide
) -> None:
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    await _run(twilio_client.conferences(conference.sid).participants(customer.sid).update, hold=True)
    rep_heard, customer_heard = await heard_next(conference, rep, customer)
    assert tone_level(rep_heard, CUSTOMER_HZ) < SILENT
    assert tone_level(customer_heard, REP_HZ) < SILENT
    await _run(twilio_client.conferences(conference.sid).participants(customer.sid).update, hold=False)
    rep_heard, customer_heard = await heard_next(conference, rep, customer)
    assert heard_level(rep_heard, CUSTOMER_HZ) > HEARD
    assert heard_level(customer_heard, REP_HZ) > HEARD


async def test_an_entry_beep_is_heard_by_the_others_unless_turned_off(
    twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide
) -> None:
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    twilio_sim.script("+14155550144")
    for to, beep, expected in ((COACH, "false", False), ("+14155550144", None, True)):
        options = {"beep": beep} if beep is not None else {}
        added = await _run(
            twilio_client.conferences(ROOM).participants.create, from_=NUMBER, to=to, muted=True, **options
        )
        leg = await conference.participant(added.call_sid).wait_joined()
        assert leg.joined_tick is not None
        beep_ticks = (leg.joined_tick, leg.joined_tick + 10)  # 200 ms from the tick it joined on
        await conference.wait_tick(beep_ticks[1])
        for listener in (customer, rep):
            level = tone_level(listener.heard_audio(*beep_ticks), BEEP_HZ)
            assert (level > HEARD) is expected and (level < SILENT) is not expected
        assert tone_level(leg.heard_audio(*beep_ticks), BEEP_HZ) < SILENT  # the one who joins never hears it


async def test_conference_status_callbacks_are_signed_and_in_order(
    twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide
) -> None:
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    coach = await _run(
        twilio_client.conferences(conference.sid).participants.create,
        from_=NUMBER,
        to=COACH,
        call_sid_to_coach=rep.sid,
        beep="false",
    )
    assert coach.coaching is True  # CallSidToCoach alone means coaching
    await conference.participant(coach.call_sid).wait_joined()
    participants = twilio_client.conferences(conference.sid).participants
    await _run(participants(coach.call_sid).update, muted=True)
    await _run(participants(coach.call_sid).update, coaching=False)
    await _run(participants(customer.sid).update, hold=True)
    await _run(twilio_client.conferences(conference.sid).update, status="completed")
    await conference.wait_ended()

    events = conference.events
    assert events[:3] == ["participant-join", "participant-join", "conference-start"]
    assert events[3:7] == ["participant-join", "participant-mute", "participant-modify", "participant-hold"]
    assert sorted(events[7:10]) == ["participant-leave"] * 3 and events[10:] == ["conference-end"]
    received = await app_side.wait_for("/status", len(events))
    assert all(r.signed for r in received)
    by_event = [r.params for r in received]
    assert all(p["ConferenceSid"] == conference.sid and p["FriendlyName"] == ROOM for p in by_event)
    assert [int(p["SequenceNumber"]) for p in by_event] == list(range(1, len(events) + 1))
    coach_join = by_event[3]
    assert coach_join["CallSid"] == coach.call_sid
    assert (coach_join["Coaching"], coach_join["CallSidToCoach"], coach_join["Muted"]) == (
        "true",
        rep.sid,
        "false",
    )
    assert [p.get("CallSid") for p in by_event[:2]] == [customer.sid, rep.sid]
    assert by_event[1]["ParticipantLabel"] == "rep" and "ParticipantLabel" not in by_event[0]
    end = by_event[-1]
    assert end["ReasonConferenceEnded"] == "conference-ended-via-api" and "CallSidEndingConference" not in end


async def test_ending_the_conference_lets_every_call_go(
    twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide
) -> None:
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    ended = await _run(twilio_client.conferences(conference.sid).update, status="completed")
    assert (ended.status, ended.reason_conference_ended) == ("completed", "conference-ended-via-api")
    # nothing follows <Dial> in either call's TwiML: both calls end
    assert await customer.call.wait_ended() == "completed"
    assert await rep.call.wait_ended() == "completed"
    listed = await _run(twilio_client.conferences(conference.sid).participants.list)
    assert listed == []
    assert twilio_sim.conferences.named(ROOM) is None  # the name is free for a new conference


async def test_the_last_to_leave_or_an_end_on_exit_participant_ends_it(
    twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide
) -> None:
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    await _run(twilio_client.calls(customer.sid).update, status="completed")
    await customer.call.wait_ended()
    assert conference.status == "in-progress"  # the rep is still in
    await _run(twilio_client.conferences(conference.sid).participants("rep").delete)
    assert (conference.status, conference.reason_conference_ended) == ("completed", "last-participant-kicked")
    assert conference.call_sid_ending_conference == rep.sid

    twilio_sim.script(REP, say=(f"tone:{REP_HZ:g}:60",))
    boss = await _run(
        twilio_client.conferences("boss-room").participants.create,
        from_=NUMBER,
        to=REP,
        end_conference_on_exit=True,
    )
    other = await _run(twilio_client.conferences("boss-room").participants.create, from_=NUMBER, to=COACH)
    room = twilio_sim.conferences.named("boss-room")
    assert room is not None and room.sid != conference.sid
    await room.participant(boss.call_sid).wait_joined()
    await room.participant(other.call_sid).wait_joined()
    await _run(twilio_client.calls(boss.call_sid).update, status="completed")
    assert await twilio_sim.call(other.call_sid).wait_ended() == "completed"
    assert room.reason_conference_ended == "participant-with-end-conference-on-exit-left"


async def test_a_participant_who_does_not_answer_leaves_with_the_call_status(
    twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide
) -> None:
    twilio_sim.script(REP)
    twilio_sim.script(COACH, outcomes=["busy"])
    rep = await _run(
        twilio_client.conferences(ROOM).participants.create,
        from_=NUMBER,
        to=REP,
        conference_status_callback=app_side.url("/status"),
        conference_status_callback_event=["join", "leave"],
    )
    conference = twilio_sim.conferences.named(ROOM)
    assert conference is not None
    await conference.participant(rep.call_sid).wait_joined()
    busy = await _run(
        twilio_client.conferences(ROOM).participants.create, from_=NUMBER, to=COACH, label="coach"
    )
    assert busy.status == "queued"
    assert await twilio_sim.call(busy.call_sid).wait_ended() == "busy"
    assert conference.participant(busy.call_sid).status == "failed"
    listed = await _run(twilio_client.conferences(conference.sid).participants.list)
    assert [p.call_sid for p in listed] == [rep.call_sid]
    received = await app_side.wait_for("/status", 2)
    leave = received[1].params
    assert (leave["StatusCallbackEvent"], leave["CallSid"], leave["ParticipantCallStatus"]) == (
        "participant-leave",
        busy.call_sid,
        "busy",
    )
    assert conference.status == "init"  # one participant alone never starts a conference


async def test_rest_shapes(twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide) -> None:
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    fetched = await _run(twilio_client.conferences(conference.sid).fetch)
    assert (fetched.sid, fetched.friendly_name, fetched.status) == (conference.sid, ROOM, "in-progress")
    assert fetched.sid.startswith("CF") and len(fetched.sid) == 34
    assert fetched.account_sid == ACCOUNT_SID and isinstance(fetched.date_created, datetime)
    assert fetched.uri == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Conferences/{conference.sid}.json"
    assert fetched.subresource_uris["participants"].endswith(
        f"/Conferences/{conference.sid}/Participants.json"
    )
    named = await _run(twilio_client.conferences.list, friendly_name=ROOM, status="in-progress")
    assert [c.sid for c in named] == [conference.sid]
    assert await _run(twilio_client.conferences.list, friendly_name="nobody-here") == []

    by_label = await _run(twilio_client.conferences(conference.sid).participants("rep").fetch)
    assert (by_label.call_sid, by_label.label, by_label.status) == (rep.sid, "rep", "connected")
    assert (by_label.muted, by_label.hold, by_label.coaching, by_label.call_sid_to_coach) == (
        False,
        False,
        False,
        None,
    )
    assert by_label.conference_sid == conference.sid
    assert by_label.start_conference_on_enter is True and by_label.end_conference_on_exit is False
    assert by_label.uri.endswith(f"/Conferences/{conference.sid}/Participants/{rep.sid}.json")
    everyone = await _run(twilio_client.conferences(conference.sid).participants.list)
    assert {p.call_sid for p in everyone} == {customer.sid, rep.sid}
    on_hold = await _run(twilio_client.conferences(conference.sid).participants.list, hold=True)
    assert on_hold == []
    assert await _run(twilio_client.conferences(conference.sid).participants("rep").delete) is True
    assert await rep.call.wait_ended() == "completed"


async def test_rest_errors(twilio_sim: TwilioSim, twilio_client: Client, app_side: AppSide) -> None:
    async def refused(function: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, int]:
        with pytest.raises(TwilioRestException) as caught:
            await _run(function, *args, **kwargs)
        return caught.value.status, caught.value.code

    unknown = "CF" + "0" * 32
    assert await refused(twilio_client.conferences(unknown).fetch) == (404, 20404)
    assert await refused(twilio_client.conferences(unknown).participants.create, from_=NUMBER, to=REP) == (
        404,
        20404,
    )
    conference, customer, rep = await _customer_and_rep(twilio_sim, twilio_client, app_side)
    participants = twilio_client.conferences(conference.sid).participants
    assert await refused(participants("CA" + "0" * 32).fetch) == (404, 20404)
    assert await refused(participants("nobody").update, muted=True) == (404, 20404)
    assert await refused(participants.create, from_=NUMBER, to=COACH, coaching=True) == (400, 20001)
    assert await refused(participants.create, from_=NUMBER, to=COACH, call_sid_to_coach="CA" + "1" * 32) == (
        400,
        16028,
    )
    assert await refused(participants.create, from_=NUMBER, to="+1555") == (400, 21211)
    assert await refused(participants.create, from_=NUMBER, to=COACH, beep="loud") == (400, 20001)
    assert await refused(participants.create, from_=NUMBER, to=COACH, label="rep") == (400, 20001)
    assert await refused(participants(rep.sid).update, coaching=True) == (400, 20001)
    await _run(participants(rep.sid).update, hold=True)
    assert await refused(participants(customer.sid).update, call_sid_to_coach=rep.sid) == (400, 16027)
    assert await refused(twilio_client.conferences(conference.sid).update, status="in-progress") == (
        400,
        20001,
    )
    assert len(conference.participants) == 2  # nothing refused was dialed


async def test_a_coach_attribute_naming_no_participant_is_refused_in_twiml(
    twilio_sim: TwilioSim, app_side: AppSide
) -> None:
    app_side.twiml = _room_twiml(app_side, coach="CA" + "2" * 32)
    call = twilio_sim.place_inbound(COACH, NUMBER, app_side.url("/voice"))
    assert await call.wait_ended() == "completed"
    assert any(error.startswith("13240") for error in call.errors)
    assert twilio_sim.conferences.named(ROOM) is None  # nobody to coach: no room was opened either


def test_conference_noun_attributes_are_parsed_with_twilios_defaults() -> None:
    [verb] = parse_twiml(
        '<Response><Dial action="/after"><Conference coach="CA1" muted="true" beep="onExit" '
        'startConferenceOnEnter="false" endConferenceOnExit="true" participantLabel="coach" '
        'statusCallback="/conf" statusCallbackEvent="join leave modify">room</Conference></Dial></Response>',
        "https://app.test/voice",
    )
    assert isinstance(verb, Dial)
    [target] = verb.targets
    assert (target.kind, target.address) == ("conference", "room")
    assert target.conference == ConferenceNoun(
        muted=True,
        beep="onExit",
        start_conference_on_enter=False,
        end_conference_on_exit=True,
        coach="CA1",
        participant_label="coach",
        status_callback="https://app.test/conf",
        status_callback_events=frozenset({"join", "leave", "modify"}),
    )
    [plain] = parse_twiml("<Response><Dial><Conference>room</Conference></Dial></Response>")
    assert isinstance(plain, Dial) and plain.targets[0].conference == ConferenceNoun()
    for bad in ('beep="loud"', 'muted="yes"', 'statusCallbackEvent="join explode"'):
        with pytest.raises(TwimlError) as caught:
            parse_twiml(f"<Response><Dial><Conference {bad}>room</Conference></Dial></Response>")
        assert caught.value.code == 12200
