"""The room's recording: one file per leg and a mix, all the same length, aligned on the room clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from parley.audio.mixer import tone_dbfs
from parley.audio.wav import read_wav
from parley.engine.events import EventType, Timeline
from parley.rooms import Mode, Participant, Role, Room
from tests.rooms.helpers import Ear, Tone, play


async def test_each_leg_and_the_mix_are_written_aligned_and_a_late_joiner_is_padded(tmp_path: Path) -> None:
    room = Room("call", Timeline())
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    room.join(Participant("coach", Role.COACH, Mode.WHISPER), Ear())
    cust, rep, coach = Tone(300.0), Tone(500.0, 48000), Tone(1700.0)
    await play(room, 50, {"cust": cust, "coach": coach})  # the rep is not there yet for the first second
    room.join(Participant("rep", Role.REP, Mode.SPEAK), Ear())
    await play(room, 50, {"cust": cust, "coach": coach, "rep": rep})
    recording = await room.close()
    assert recording is not None

    paths = recording.write(tmp_path / "rec")
    assert set(paths) == {"mix", "leg-cust", "leg-coach", "leg-rep"}
    assert {p.name for p in paths.values()} == {"mix.wav", "leg-cust.wav", "leg-coach.wav", "leg-rep.wav"}
    for path in paths.values():
        info = sf.info(str(path))
        assert (info.channels, info.samplerate, info.frames) == (1, 16000, 100 * 320)

    rep_track = read_wav(paths["leg-rep"]).pcm
    assert np.abs(rep_track[:16000]).max() == 0  # absent for the first second
    assert tone_dbfs(rep_track[20000:], 16000, 500.0) > -20
    mixed = read_wav(paths["mix"]).pcm[20000:]
    for hz in (300.0, 500.0, 1700.0):  # an observer hears everyone, whispers included
        assert tone_dbfs(mixed, 16000, hz) > -20


async def test_recording_stops_at_its_limit_with_one_error() -> None:
    timeline = Timeline()
    room = Room("call", timeline, max_recording_s=0.1)
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    await play(room, 20, {"cust": Tone(300.0)})
    recording = await room.close()
    assert recording is not None and recording.truncated
    assert recording.duration_s == 0.1
    errors = timeline.of_type(EventType.ERROR)
    assert [e.data["where"] for e in errors] == ["room.recording"]
