"""Each leg is transcribed on its own: who said what, when, onto one timeline (no diarization)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from parley.audio.frame import PCM16
from parley.audio.mixer import tone_dbfs
from parley.audio.vad import EnergyVAD
from parley.engine.events import EventType, Timeline
from parley.providers.asr.base import Transcript
from parley.providers.asr.scripted import ScriptedRecognizer, ScriptedStream
from parley.rooms import Mode, Participant, Role, Room, Utterance, per_leg_transcription
from tests.rooms.helpers import Ear, Tone, play


def _vad() -> EnergyVAD:
    return EnergyVAD(16000, frame_ms=20, threshold_dbfs=-35.0)


def _room(timeline: Timeline, recognizer: ScriptedRecognizer, heard: list[Utterance] | None = None) -> Room:
    factory = per_leg_transcription(
        recognizer, _vad, silence_s=0.6, on_utterance=heard.append if heard is not None else None
    )
    room = Room("call", timeline, transcriber_factory=factory, record=False)
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    room.join(Participant("rep", Role.REP, Mode.SPEAK), Ear(8000))
    return room


async def test_two_legs_speaking_in_turn_give_two_utterances_with_their_roles() -> None:
    timeline = Timeline()
    heard: list[Utterance] = []
    room = _room(timeline, ScriptedRecognizer(["the price is too high", "let me check that"]), heard)
    origin = room.time
    cust, rep = Tone(220.0), Tone(330.0, 8000)  # the rep is on a phone line
    await play(room, 10, {})
    await play(room, 40, {"cust": cust})  # 0.2-1.0 s: the customer speaks
    await play(room, 50, {})
    await play(room, 30, {"rep": rep})  # 2.0-2.6 s: the rep answers
    await play(room, 50, {})

    utterances = timeline.of_type(EventType.ROOM_UTTERANCE)
    assert [(e.data["participant_id"], e.data["role"], e.data["text"]) for e in utterances] == [
        ("cust", "customer", "the price is too high"),
        ("rep", "rep", "let me check that"),
    ]
    first, second = (e.data for e in utterances)
    assert abs(first["start"] - origin - 0.2) < 0.06 and abs(first["end"] - origin - 1.0) < 0.06
    assert abs(second["start"] - origin - 2.0) < 0.08 and abs(second["end"] - origin - 2.6) < 0.08
    assert first["end"] < second["start"]
    assert 0.8 <= first["audio_seconds"] <= 1.3  # the speech, its pre-roll and the pause that ended it
    assert [(u.participant_id, u.role, u.text) for u in heard] == [
        ("cust", Role.CUSTOMER, "the price is too high"),
        ("rep", Role.REP, "let me check that"),
    ]
    await room.close()


async def test_a_short_pause_does_not_split_an_utterance() -> None:
    timeline = Timeline()
    room = _room(timeline, ScriptedRecognizer(["one sentence with a breath in it"]))
    cust = Tone(220.0)
    await play(room, 25, {"cust": cust})
    await play(room, 15, {})  # 0.3 s breath, under silence_s
    await play(room, 25, {"cust": cust})
    await play(room, 40, {})
    assert [e.data["text"] for e in timeline.of_type(EventType.ROOM_UTTERANCE)] == [
        "one sentence with a breath in it"
    ]
    await room.close()


async def test_speech_still_going_at_close_is_transcribed() -> None:
    timeline = Timeline()
    room = _room(timeline, ScriptedRecognizer(["cut off mid"]))
    await play(room, 30, {"rep": Tone(330.0, 8000)})
    await room.close()
    assert [e.data["participant_id"] for e in timeline.of_type(EventType.ROOM_UTTERANCE)] == ["rep"]


async def test_silence_and_empty_transcripts_make_no_utterance() -> None:
    timeline = Timeline()
    room = _room(timeline, ScriptedRecognizer(["  "]))
    await play(room, 30, {})
    await play(room, 30, {"cust": Tone(220.0)})
    await play(room, 40, {})
    await room.close()
    assert timeline.of_type(EventType.ROOM_UTTERANCE) == []


class _FailingOnce(ScriptedRecognizer):
    """A recogniser whose first final transcript fails (a remote engine that dropped)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines)
        self.failures = 1

    def open_stream(self, vocabulary: Sequence[str] = ()) -> ScriptedStream:
        return _FlakyStream(self)


class _FlakyStream(ScriptedStream):
    def __init__(self, recognizer: _FailingOnce) -> None:
        super().__init__(recognizer)
        self._owner = recognizer

    async def finalize(self) -> Transcript:
        if self._owner.failures:
            self._owner.failures -= 1
            raise ConnectionError("recogniser went away")
        return await super().finalize()


async def test_a_recogniser_failure_is_an_error_event_and_the_leg_goes_on() -> None:
    timeline = Timeline()
    room = _room(timeline, _FailingOnce(["second try works"]))
    await play(room, 25, {"cust": Tone(220.0)})
    await play(room, 40, {})
    errors = timeline.of_type(EventType.ERROR)
    assert [(e.data["where"], e.data["participant_id"]) for e in errors] == [("room.asr", "cust")]
    await play(room, 25, {"cust": Tone(220.0)})
    await play(room, 40, {})
    assert [e.data["text"] for e in timeline.of_type(EventType.ROOM_UTTERANCE)] == ["second try works"]
    await room.close()


class _Stalled(ScriptedRecognizer):
    """A recogniser that takes no audio until released (an overloaded engine)."""

    def __init__(self) -> None:
        super().__init__(["finally heard"])
        self.release = asyncio.Event()

    def open_stream(self, vocabulary: Sequence[str] = ()) -> ScriptedStream:
        return _StalledStream(self)


class _StalledStream(ScriptedStream):
    def __init__(self, recognizer: _Stalled) -> None:
        super().__init__(recognizer)
        self._owner = recognizer

    async def push(self, pcm: PCM16) -> None:
        await self._owner.release.wait()
        await super().push(pcm)


async def test_a_stalled_recogniser_does_not_hold_up_the_room() -> None:
    timeline = Timeline()
    recognizer = _Stalled()
    factory = per_leg_transcription(recognizer, _vad)
    room = Room("call", timeline, transcriber_factory=factory, record=False)
    rep = Ear()
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    room.join(Participant("rep", Role.REP, Mode.SPEAK), rep)
    cust = Tone(220.0)
    for _ in range(50):  # the customer speaks for a second while the recogniser takes nothing
        room.leg("cust").feed(cust.next())
        await room.tick()
    await rep.wait_for(50)
    assert tone_dbfs(rep.take(0.1), 16000, 220.0) > -20  # the rep heard it all the same
    recognizer.release.set()
    await play(room, 40, {})
    assert [e.data["text"] for e in timeline.of_type(EventType.ROOM_UTTERANCE)] == ["finally heard"]
    await room.close()


async def test_a_room_can_leave_some_roles_untranscribed() -> None:
    timeline = Timeline()
    factory = per_leg_transcription(ScriptedRecognizer(["customer words"]), _vad, roles=[Role.CUSTOMER])
    room = Room("call", timeline, transcriber_factory=factory, record=False)
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    room.join(Participant("bot", Role.AGENT, Mode.SPEAK), Ear())
    await play(room, 25, {"bot": Tone(440.0)})
    await play(room, 40, {})
    await play(room, 25, {"cust": Tone(220.0)})
    await play(room, 40, {})
    await room.close()
    assert [e.data["participant_id"] for e in timeline.of_type(EventType.ROOM_UTTERANCE)] == ["cust"]


async def test_speaking_is_told_as_it_starts_and_pauses_before_the_transcript() -> None:
    timeline = Timeline()
    changes: list[tuple[str, bool]] = []
    factory = per_leg_transcription(
        ScriptedRecognizer(["a long answer"]),
        _vad,
        silence_s=0.6,
        on_speaking=lambda participant, active: changes.append((participant.id, active)),
    )
    room = Room("call", timeline, transcriber_factory=factory, record=False)
    room.join(Participant("rep", Role.REP, Mode.SPEAK), Ear())
    await play(room, 40, {"rep": Tone(330.0)})
    await room.drain()
    assert changes == [("rep", True)], "speech under way is known before any transcript"
    assert not timeline.of_type(EventType.ROOM_UTTERANCE)
    await play(room, 50, {})
    await room.drain()
    assert changes == [("rep", True), ("rep", False)]
    assert len(timeline.of_type(EventType.ROOM_UTTERANCE)) == 1
    await room.close()


async def test_each_legs_recogniser_is_told_the_teams_vocabulary() -> None:
    recognizer = ScriptedRecognizer(["we use hubspot"])
    factory = per_leg_transcription(
        recognizer, _vad, silence_s=0.6, vocabulary=["HubSpot", " SunPower ", "HubSpot"]
    )
    room = Room("call", Timeline(), transcriber_factory=factory, record=False)
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    await play(room, 30, {"cust": Tone(220.0)})
    await play(room, 50, {})
    await room.close()
    assert recognizer.vocabularies and set(recognizer.vocabularies) == {("HubSpot", "SunPower")}
