"""A customer's socket carries only the lines it could hear (and its own), whenever they become final.

A transcript is final about a second after its words were mixed: by then the rep who spoke them muted
may have left, been taken out, or been unmuted, and a whispering coach may barge in. Who may read a
line is decided by the modes its words were spoken in, never by the speaker's mode (or absence) when the
line is ready. Staff (reps and coaches) read every line. Over real WebSocket legs on a served app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from parley.audio.frame import PCM16
from parley.audio.mixer import tone_dbfs
from parley.audio.vad import EnergyVAD
from parley.engine.events import EventType, Timeline
from parley.providers.asr.scripted import ScriptedRecognizer, ScriptedStream
from parley.rooms import Mode, Participant, Role, Room, per_leg_transcription
from parley.transports.ws_client import LiveClient
from tests.coaching.kit import COACH_HZ, CUSTOMER_HZ, REP_HZ, api, invite, join, open_room, room_server, tone
from tests.rooms.helpers import Ear, Tone, play
from tests.server.conftest import talking

SECRET = "the lowest price I can give is forty dollars but do not tell the customer"
LINE_WAIT_S = 5.0


def lines_of(client: LiveClient) -> list[tuple[str, str]]:
    return [(m["role"], m["text"]) for m in client.of_type("utterance")]


async def settled(client: LiveClient) -> None:
    """Returns once the server has sent this client everything queued for it before now (a pong
    comes after them on the same socket)."""
    mark = len(client.messages)
    await client.send({"type": "ping", "id": 1})
    await client.wait_for("pong", LINE_WAIT_S, since=mark, id=1)


async def _with_muted_rep(
    http: httpx.AsyncClient,
) -> tuple[dict[str, Any], LiveClient, LiveClient, dict[str, Any], LiveClient]:
    """A room with a customer, a coach and a rep in ``listen`` mode, all connected: the room, the
    customer's and coach's clients, the rep's invitation and its client."""
    room = await open_room(http, enabled=False)
    customer, _ = await join(await invite(http, room["id"], "customer"))
    coach, _ = await join(await invite(http, room["id"], "coach"))
    invitation = await invite(http, room["id"], "rep", mode="listen")
    rep, _ = await join(invitation)
    return room, customer, coach, invitation, rep


def not_final_yet(observer: LiveClient) -> None:
    """The step just taken came before the line was final (else this test would test nothing)."""
    assert observer.of_type("utterance") == [], "the line was final before the step; nothing was tested"


async def test_a_muted_rep_who_leaves_right_after_speaking_is_not_read_by_the_customer(
    tmp_path: Path,
) -> None:
    async with room_server(tmp_path, [SECRET]) as served, api(served) as http:
        _, customer, coach, _, rep = await _with_muted_rep(http)
        async with talking(rep) as mic:
            await mic.say(tone(1.0, REP_HZ))
            not_final_yet(coach)
            await rep.send({"type": "leave"})
            await rep.wait_closed()
        line = await coach.wait_for("utterance", LINE_WAIT_S, role="rep")
        assert line["text"] == SECRET, "staff read a departed rep's last words"
        await settled(customer)
        assert lines_of(customer) == [], "the customer read what a muted rep said before leaving"
        for client in (customer, coach):
            await client.close()


async def test_a_muted_rep_taken_out_while_speaking_is_not_read_by_the_customer(tmp_path: Path) -> None:
    async with room_server(tmp_path, [SECRET]) as served, api(served) as http:
        room, customer, coach, invitation, rep = await _with_muted_rep(http)
        async with talking(rep) as mic:
            speaking = asyncio.create_task(mic.say(tone(2.0, REP_HZ)))
            await asyncio.sleep(0.6)  # well into the 2 s of speech
            removed = await http.delete(f"/v1/rooms/{room['id']}/participants/{invitation['participant_id']}")
            assert removed.status_code == 204, removed.text
            await rep.wait_closed()
            speaking.cancel()
        line = await coach.wait_for("utterance", LINE_WAIT_S, role="rep")
        assert line["text"] == SECRET, "staff read a removed rep's last words"
        await settled(customer)
        assert lines_of(customer) == [], "the customer read what a muted rep said before it was removed"
        for client in (customer, coach):
            await client.close()


async def test_a_rep_unmuted_right_after_speaking_muted_is_read_only_from_then_on(tmp_path: Path) -> None:
    said_in_speak = "so shall we book the pilot for next week"
    async with room_server(tmp_path, [SECRET, said_in_speak]) as served, api(served) as http:
        room, customer, coach, invitation, rep = await _with_muted_rep(http)
        async with talking(rep) as mic:
            await mic.say(tone(1.0, REP_HZ))
            unmuted = await _set_mode(http, room["id"], invitation["participant_id"], "speak")
            not_final_yet(coach)
            assert unmuted["mode"] == "speak"
            await coach.wait_for("utterance", LINE_WAIT_S, role="rep", text=SECRET)
            await mic.say(tone(1.0, REP_HZ))
            await coach.wait_for("utterance", LINE_WAIT_S, role="rep", text=said_in_speak)
        await rep.wait_for("utterance", LINE_WAIT_S, text=said_in_speak)
        assert lines_of(rep) == [("rep", SECRET), ("rep", said_in_speak)], "a rep reads its own lines"
        await settled(customer)
        assert lines_of(customer) == [("rep", said_in_speak)], "the customer read words spoken muted"
        for client in (customer, coach, rep):
            await client.close()


async def test_a_line_the_rep_began_muted_and_finished_unmuted_is_not_the_customers(tmp_path: Path) -> None:
    async with room_server(tmp_path, [SECRET]) as served, api(served) as http:
        room, customer, coach, invitation, rep = await _with_muted_rep(http)
        async with talking(rep) as mic:
            speaking = asyncio.create_task(mic.say(tone(2.0, REP_HZ)))
            await asyncio.sleep(0.6)  # well into the 2 s of speech
            await _set_mode(http, room["id"], invitation["participant_id"], "speak")
            await speaking
            await coach.wait_for("utterance", LINE_WAIT_S, role="rep", text=SECRET)
        await settled(customer)
        assert lines_of(customer) == [], "the customer read a line whose first words were spoken muted"
        for client in (customer, coach, rep):
            await client.close()


async def test_a_whispering_coachs_words_never_reach_the_customer(tmp_path: Path) -> None:
    whispered = "ask them about the pilot"
    barged = "we can start with a pilot next week"
    last_whisper = "now ask for the budget"
    async with room_server(tmp_path, [whispered, barged, last_whisper]) as served, api(served) as http:
        room = await open_room(http, enabled=False)
        customer, _ = await join(await invite(http, room["id"], "customer"))
        rep, _ = await join(await invite(http, room["id"], "rep"))
        invitation = await invite(http, room["id"], "coach", mode="whisper")
        coach_id = invitation["participant_id"]
        coach, _ = await join(invitation)
        async with talking(coach) as mic:
            # Whispered, then the coach barges in before the line is final.
            await mic.say(tone(1.0, COACH_HZ))
            await _set_mode(http, room["id"], coach_id, "barge")
            not_final_yet(rep)
            await rep.wait_for("utterance", LINE_WAIT_S, text=whispered)
            # Said while barging: everyone heard it.
            await mic.say(tone(1.0, COACH_HZ))
            await rep.wait_for("utterance", LINE_WAIT_S, text=barged)
            # Whispered again, and the coach leaves before the line is final.
            await _set_mode(http, room["id"], coach_id, "whisper")
            await mic.say(tone(1.0, COACH_HZ))
            await coach.send({"type": "leave"})
            await coach.wait_closed()
        await rep.wait_for("utterance", LINE_WAIT_S, text=last_whisper)
        assert lines_of(rep) == [("coach", whispered), ("coach", barged), ("coach", last_whisper)]
        await settled(customer)
        assert lines_of(customer) == [("coach", barged)], "the customer read a coach's whisper"
        for client in (customer, rep):
            await client.close()


async def test_words_spoken_unmuted_reach_the_customer_even_after_the_rep_left(tmp_path: Path) -> None:
    asked = "is there a discount for two years"
    answered = "yes ten percent off for a two year plan"
    goodbye = "I will send the contract today goodbye"
    async with room_server(tmp_path, [asked, answered, goodbye]) as served, api(served) as http:
        room = await open_room(http, enabled=False)
        customer, _ = await join(await invite(http, room["id"], "customer"))
        coach, _ = await join(await invite(http, room["id"], "coach"))
        rep, _ = await join(await invite(http, room["id"], "rep"))
        async with talking(customer) as customer_mic, talking(rep) as rep_mic:
            await customer_mic.say(tone(1.0, CUSTOMER_HZ))
            await coach.wait_for("utterance", LINE_WAIT_S, text=asked)
            await rep_mic.say(tone(1.0, REP_HZ))
            await coach.wait_for("utterance", LINE_WAIT_S, text=answered)
            await rep_mic.say(tone(1.0, REP_HZ))
            await rep.send({"type": "leave"})
            await rep.wait_closed()
        await coach.wait_for("utterance", LINE_WAIT_S, text=goodbye)
        everything = [("customer", asked), ("rep", answered), ("rep", goodbye)]
        assert lines_of(coach) == everything, "staff read every line"
        assert lines_of(rep) == everything[:2], "the rep read every line while it was there"
        await settled(customer)
        assert lines_of(customer) == everything, "the customer reads what it heard, its own words too"
        for client in (customer, coach):
            await client.close()


def _vad() -> EnergyVAD:
    return EnergyVAD(16000, frame_ms=20, threshold_dbfs=-35.0)


class _KeepsAudio(ScriptedRecognizer):
    """A scripted recogniser that keeps the audio each of its streams was given."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines)
        self.streams: list[_KeptStream] = []

    def open_stream(self, vocabulary: Sequence[str] = ()) -> ScriptedStream:
        stream = _KeptStream(self)
        self.streams.append(stream)
        return stream


class _KeptStream(ScriptedStream):
    def __init__(self, recognizer: ScriptedRecognizer) -> None:
        super().__init__(recognizer)
        self.pcm: list[PCM16] = []

    async def push(self, pcm: PCM16) -> None:
        await super().push(pcm)
        self.pcm.append(pcm.copy())


async def test_what_a_rep_murmured_muted_is_not_transcribed_into_its_first_line_unmuted() -> None:
    """Murmurs too soft to start an utterance are a line's pre-roll: never those from before a mode
    change, or a real recogniser could write muted words into a line the customer reads."""
    timeline = Timeline()
    recognizer = _KeepsAudio(["shall we book the pilot"])
    factory = per_leg_transcription(recognizer, _vad)
    room = Room("call", timeline, transcriber_factory=factory, record=False)
    customer = Participant("cust", Role.CUSTOMER, Mode.SPEAK)
    room.join(customer, Ear())
    room.join(Participant("rep", Role.REP, Mode.LISTEN), Ear())
    await play(room, 40, {"rep": Tone(500.0, level=0.01)})  # muted, below the VAD's threshold
    room.set_mode("rep", Mode.SPEAK)
    await play(room, 40, {"rep": Tone(330.0)})
    await play(room, 50, {})
    [line] = timeline.of_type(EventType.ROOM_UTTERANCE)
    assert room.heard("rep", customer, line.data["start"], line.data["end"]), "said unmuted, heard"
    given = np.concatenate([pcm for stream in recognizer.streams for pcm in stream.pcm])
    assert tone_dbfs(given, 16000, 330.0) > -20.0, "the recogniser heard the line"
    assert tone_dbfs(given, 16000, 500.0) < -60.0, "the recogniser heard the rep's muted murmur"
    await room.close()


async def test_a_departed_speakers_words_are_judged_by_the_modes_it_spoke_them_in() -> None:
    room = Room("call", Timeline(), record=False)
    customer = Participant("cust", Role.CUSTOMER, Mode.SPEAK)
    room.join(customer, Ear())
    room.join(Participant("rep", Role.REP, Mode.SPEAK), Ear())
    await play(room, 10, {})
    unmuted_until = room.time
    room.set_mode("rep", Mode.LISTEN)
    await play(room, 10, {})
    await room.leave("rep")
    known = room.known("rep")
    assert known is not None and (known.role, known.mode) == (Role.REP, Mode.LISTEN), "kept after it left"
    assert room.heard("rep", customer, unmuted_until - 0.1, unmuted_until)
    assert not room.heard("rep", customer, unmuted_until - 0.1, unmuted_until + 0.05), "partly muted"
    assert not room.heard("rep", customer, unmuted_until + 0.05, unmuted_until + 0.1)
    assert not room.heard("nobody", customer, 0.0, 1.0)
    await room.close()


async def _set_mode(http: httpx.AsyncClient, room_id: str, participant_id: str, mode: str) -> dict[str, Any]:
    changed = await http.patch(f"/v1/rooms/{room_id}/participants/{participant_id}", json={"mode": mode})
    assert changed.status_code == 200, changed.text
    return dict(changed.json())
