"""The room as its participants notice it: who hears whom (measured on the audio each one receives), live
mode changes, a broken or stuck listener, and a leg that talks faster than the room mixes."""

from __future__ import annotations

import numpy as np
import pytest

from parley.audio.mixer import tone_dbfs
from parley.engine.events import EventType, Timeline
from parley.rooms import (
    InvalidParticipant,
    Mode,
    Participant,
    ParticipantExists,
    Role,
    Room,
    RoomClosed,
    RoomFull,
    UnknownParticipant,
)
from tests.rooms.helpers import BrokenEar, Ear, StuckEar, Tone, play

CUSTOMER_HZ, REP_HZ, COACH_HZ = 300.0, 500.0, 1700.0
HEARD = -20.0
"""A tone at level 0.3-0.5 reads about -13 to -9 dBFS; anything above this was clearly heard."""
SILENT = -60.0


async def test_a_whisper_reaches_the_rep_and_never_the_customer() -> None:
    timeline = Timeline()
    room = Room("call-1", timeline, record=False)
    # Every leg at a different wire rate: a phone customer, a browser rep, a 48 kHz coach.
    ears = {"cust": Ear(8000), "rep": Ear(16000), "coach": Ear(48000)}
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), ears["cust"])
    room.join(Participant("rep", Role.REP, Mode.SPEAK), ears["rep"])
    room.join(Participant("coach", Role.COACH, Mode.WHISPER), ears["coach"])
    voices = {
        "cust": Tone(CUSTOMER_HZ, 8000),
        "rep": Tone(REP_HZ, 48000),
        "coach": Tone(COACH_HZ, 16000, level=0.5),  # a loud whisper, at a frequency nobody else uses
    }

    await play(room, 75, voices)
    rep = ears["rep"].take(0.1)
    customer = ears["cust"].take(0.1)
    coach = ears["coach"].take(0.1)
    assert tone_dbfs(rep, 16000, COACH_HZ) > HEARD
    assert tone_dbfs(customer, 8000, COACH_HZ) < SILENT
    assert tone_dbfs(customer, 8000, REP_HZ) > HEARD  # the customer does hear the rep
    assert tone_dbfs(coach, 48000, CUSTOMER_HZ) > HEARD  # the coach hears both sides
    assert tone_dbfs(coach, 48000, REP_HZ) > HEARD

    room.set_mode("coach", Mode.BARGE)
    await play(room, 50, voices)
    assert ears["cust"].level(COACH_HZ) > HEARD
    assert ears["rep"].level(COACH_HZ) > HEARD

    room.set_mode("coach", Mode.LISTEN)
    await play(room, 50, voices)
    assert ears["cust"].level(COACH_HZ) < SILENT
    assert ears["rep"].level(COACH_HZ) < SILENT
    assert ears["coach"].level(REP_HZ) > HEARD  # still listening in

    changes = [(e.data["old"], e.data["new"]) for e in timeline.of_type(EventType.ROOM_MODE_CHANGED)]
    assert changes == [("whisper", "barge"), ("barge", "listen")]
    assert all(e.session_id == "call-1" for e in timeline.events)
    await room.close()


async def test_nobody_hears_themselves() -> None:
    room = Room("r", Timeline(), record=False)
    ears = {"a": Ear(), "b": Ear()}
    room.join(Participant("a", Role.CUSTOMER, Mode.SPEAK), ears["a"])
    room.join(Participant("b", Role.REP, Mode.SPEAK), ears["b"])
    await play(room, 40, {"a": Tone(CUSTOMER_HZ), "b": Tone(REP_HZ)})
    a, b = ears["a"].take(0.1), ears["b"].take(0.1)
    assert tone_dbfs(a, 16000, CUSTOMER_HZ) < SILENT
    assert tone_dbfs(a, 16000, REP_HZ) > HEARD
    assert tone_dbfs(b, 16000, REP_HZ) < SILENT
    assert tone_dbfs(b, 16000, CUSTOMER_HZ) > HEARD
    await room.close()


async def test_every_frame_is_stamped_on_the_room_clock() -> None:
    room = Room("r", Timeline(), record=False)
    ear = Ear()
    room.join(Participant("a", Role.CUSTOMER, Mode.SPEAK), ear)
    start = room.time
    await play(room, 5, {})
    assert [round(f.timestamp - start, 6) for f in ear.frames] == [0.0, 0.02, 0.04, 0.06, 0.08]
    assert all(f.num_samples == 320 for f in ear.frames)
    await room.close()


async def test_joining_leaving_and_mode_changes_are_on_the_timeline() -> None:
    timeline = Timeline()
    room = Room("r", timeline, record=False)
    room.join(Participant("c1", Role.COACH, Mode.LISTEN, name="Sam"), Ear())
    room.set_mode("c1", Mode.LISTEN)  # no change, no event
    room.set_mode("c1", Mode.WHISPER)
    await room.leave("c1")
    joined, changed, left = (timeline.of_type(t)[0].data for t in _ROOM_EVENTS)
    assert joined == {"participant_id": "c1", "role": "coach", "mode": "listen", "name": "Sam"}
    assert changed == {"participant_id": "c1", "old": "listen", "new": "whisper"}
    assert left["participant_id"] == "c1" and left["reason"] == "left"
    assert len(timeline.of_type(EventType.ROOM_MODE_CHANGED)) == 1
    assert room.participants == []


_ROOM_EVENTS = (EventType.ROOM_JOINED, EventType.ROOM_MODE_CHANGED, EventType.ROOM_LEFT)


async def test_the_room_refuses_what_it_cannot_do() -> None:
    room = Room("r", Timeline(), record=False, max_participants=2)
    room.join(Participant("a", Role.CUSTOMER, Mode.SPEAK), Ear())
    with pytest.raises(ParticipantExists):
        room.join(Participant("a", Role.REP, Mode.SPEAK), Ear())
    for bad in ("../etc", "", "x" * 65, "a b"):
        with pytest.raises(InvalidParticipant):
            room.join(Participant(bad, Role.REP, Mode.SPEAK), Ear())
    room.join(Participant("b", Role.REP, Mode.SPEAK), Ear())
    with pytest.raises(RoomFull):
        room.join(Participant("c", Role.COACH, Mode.LISTEN), Ear())
    with pytest.raises(UnknownParticipant):
        room.set_mode("nobody", Mode.BARGE)
    with pytest.raises(UnknownParticipant):
        await room.leave("nobody")
    await room.close()
    with pytest.raises(RoomClosed):
        room.join(Participant("d", Role.COACH, Mode.LISTEN), Ear())


async def test_a_failing_sink_removes_only_its_leg() -> None:
    timeline = Timeline()
    room = Room("r", timeline, record=False)
    ears = {"cust": Ear(), "rep": Ear(), "coach": BrokenEar()}
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), ears["cust"])
    room.join(Participant("rep", Role.REP, Mode.SPEAK), ears["rep"])
    room.join(Participant("coach", Role.COACH, Mode.LISTEN), ears["coach"])
    await play(room, 30, {"cust": Tone(CUSTOMER_HZ), "rep": Tone(REP_HZ)})

    assert [p.id for p in room.participants] == ["cust", "rep"]
    left = timeline.of_type(EventType.ROOM_LEFT)
    assert [(e.data["participant_id"], e.data["reason"]) for e in left] == [("coach", "sink_failed")]
    assert len(ears["cust"].frames) == 30 and len(ears["rep"].frames) == 30
    assert ears["cust"].level(REP_HZ) > HEARD
    await room.close()


async def test_a_stuck_listener_does_not_hold_up_the_others() -> None:
    room = Room("r", Timeline(), record=False)
    stuck, fine = StuckEar(), Ear()
    room.join(Participant("slow", Role.COACH, Mode.LISTEN), stuck)
    room.join(Participant("ok", Role.REP, Mode.SPEAK), fine)
    for _ in range(80):  # 1.6 s while the slow peer reads nothing
        await room.tick()
        await room.leg("ok").drain()
    assert len(fine.frames) == 80
    slow = room.leg("slow")
    assert slow.dropped_frames_out >= 80 - 51  # at most ~1 s kept for it, the oldest went
    stuck.release.set()
    await room.close()


async def test_a_leg_that_sends_too_much_keeps_its_newest_second() -> None:
    timeline = Timeline()
    room = Room("r", timeline, record=False, inbound_max_s=1.0)
    ear = Ear()
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    room.join(Participant("rep", Role.REP, Mode.SPEAK), ear)
    leg = room.leg("cust")
    old, new = Tone(CUSTOMER_HZ), Tone(700.0)
    for _ in range(50):  # 2 s arrive at once (a network stall let go)
        leg.feed(old.next())
    for _ in range(50):
        leg.feed(new.next())
    assert leg.buffered_s == pytest.approx(1.0)
    assert leg.dropped_samples == 16000 * 2 - 16000
    assert len(timeline.of_type(EventType.INPUT_OVERFLOW)) == 1

    await play(room, 50, {})
    heard = ear.take()
    assert tone_dbfs(heard, 16000, 700.0) > HEARD
    assert tone_dbfs(heard, 16000, CUSTOMER_HZ) < SILENT
    await room.close()


async def test_a_leg_that_stops_talking_is_silence_to_the_others() -> None:
    room = Room("r", Timeline(), record=False)
    ear = Ear()
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    room.join(Participant("rep", Role.REP, Mode.SPEAK), ear)
    await play(room, 20, {"cust": Tone(CUSTOMER_HZ)})
    ear.take()
    await play(room, 20, {"cust": None})
    assert np.abs(ear.take(0.04)).max() == 0
    assert room.leg("cust").starved_ticks >= 19
    await room.close()
