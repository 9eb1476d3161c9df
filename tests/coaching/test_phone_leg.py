"""A phone leg in a coached room: a Twilio Media Stream as one participant of a ``Room``.

The bridge tests drive a real room tick by tick with a fake socket behind the same bounded writer the
server uses; they check what a caller and the people in the room would notice: the caller's voice is
heard in the room, the room's mix reaches the caller as 20 ms ``media`` frames, a bad network does not
garble the voice, hanging up leaves the room, keys pressed are on the timeline.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import InvalidStatus

from parley.audio.codecs import ulaw_decode, ulaw_encode
from parley.audio.frame import PCM16, AudioFrame
from parley.audio.mixer import heard_tone_dbfs, tone_dbfs
from parley.engine.events import EventType, Timeline, now
from parley.platform.coached_room import AI_COACH_ID
from parley.rooms import Leg, Mode, Participant, Role, Room
from parley.server.room_phone import ROOM_STREAM_PATH
from parley.server.ws_outbound import WsConnection
from parley.transports.twilio_protocol import FRAME_BYTES, ULAW_RATE
from parley.transports.twilio_room_leg import HANGUP, TwilioRoomLeg
from parley.transports.ws_protocol import decode_audio, encode_audio
from parley.twilio_sim.caller import SimulatedCaller, dtmf_message, media_message, stop_message
from tests.engine.harness import agent, speech
from tests.phone.conftest import AUTH_TOKEN, PARLEY_NUMBER, PERSON, PhoneLab, phone_lab, until
from tests.rooms.helpers import Ear, Tone, play

STREAM_SID = "MZ" + "0" * 32
CALL_SID = "CA" + "1" * 32
CALLER_HZ, REP_HZ = 300.0, 700.0
HEARD = -20.0
SILENT = -60.0


class FakeSocket:
    """Twilio's end of the stream: keeps every text message the server wrote, and how it closed."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.closed_with: tuple[int, str] | None = None
        self._wrote = asyncio.Event()

    async def send_text(self, text: str) -> None:
        self.texts.append(text)
        self._wrote.set()

    async def send_bytes(self, data: bytes) -> None:
        raise AssertionError("Media Streams carry text frames only")

    async def close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    def media(self) -> list[bytes]:
        """The μ-law payloads of the ``media`` messages sent to Twilio, in order."""
        out = []
        for text in self.texts:
            message = json.loads(text)
            if message["event"] == "media":
                assert message["streamSid"] == STREAM_SID
                out.append(base64.b64decode(message["media"]["payload"]))
        return out


class Phone:
    """The caller's side of the stream: numbered ``media`` messages, as Twilio sends them."""

    def __init__(self, bridge: TwilioRoomLeg) -> None:
        self.bridge = bridge
        self.seq = 1  # ``start`` was 1

    def send(self, message: dict[str, Any]) -> None:
        self.bridge.on_text(json.dumps(message))

    def frame(self, chunk: int, pcm: np.ndarray[Any, Any]) -> dict[str, Any]:
        self.seq += 1
        return media_message(self.seq, STREAM_SID, chunk, (chunk - 1) * 20, ulaw_encode(pcm))

    def say(self, tone: Tone, first_chunk: int, frames: int) -> int:
        """``frames`` × 20 ms of ``tone`` in order; returns the next chunk number."""
        for chunk in range(first_chunk, first_chunk + frames):
            self.send(self.frame(chunk, tone.next().pcm))
        return first_chunk + frames


async def phone_room(
    timeline: Timeline | None = None, on_dtmf: Callable[[str], None] | None = None
) -> tuple[Room, TwilioRoomLeg, FakeSocket, WsConnection, Ear]:
    """A room with a phone customer (through a fake Twilio socket) and a browser rep (an ``Ear``)."""
    room = Room("room-1", timeline or Timeline(), record=False)
    socket = FakeSocket()
    connection = WsConnection(cast(Any, socket))
    bridge = TwilioRoomLeg(
        STREAM_SID, connection.send_message_raw, connection.close, call_sid=CALL_SID, on_dtmf=on_dtmf
    )
    leg = room.join(Participant("phone", Role.CUSTOMER, Mode.SPEAK), bridge)
    bridge.attach(leg, lambda reason: room.leave("phone", reason=reason))
    rep = Ear(16000)
    room.join(Participant("rep", Role.REP, Mode.SPEAK), rep)
    return room, bridge, socket, connection, rep


async def settle(connection: WsConnection) -> None:
    """Let the writer task put out what was queued (no timing: it needs only to be scheduled)."""
    for _ in range(5):
        await asyncio.sleep(0)
    assert connection.queued_messages == 0


async def test_the_callers_voice_is_heard_in_the_room() -> None:
    room, bridge, _socket, connection, rep = await phone_room()
    phone, caller = Phone(bridge), Tone(CALLER_HZ, ULAW_RATE)
    chunk = 1
    for _ in range(50):  # one frame arrives per tick, as in real time
        chunk = phone.say(caller, chunk, 1)
        await room.tick()
        await room.drain()
    assert tone_dbfs(rep.take(0.1), 16000, CALLER_HZ) > HEARD
    assert bridge.stats.frames_in == 50 and bridge.stats.bad_messages == 0
    connection.abandon()


async def test_the_rooms_mix_reaches_the_caller_as_one_media_message_per_20_ms() -> None:
    room, _bridge, socket, connection, _rep = await phone_room()
    rep_voice = Tone(REP_HZ, 16000)
    sent_after_tick = []
    for _ in range(50):
        await play(room, 1, {"rep": rep_voice})
        await settle(connection)
        sent_after_tick.append(len(socket.media()))
    payloads = socket.media()
    assert all(len(p) == FRAME_BYTES for p in payloads), "every message is one whole 20 ms frame"
    steps = np.diff([0, *sent_after_tick])
    assert set(steps.tolist()) <= {0, 1}, "never a burst: at most one frame per tick"
    assert len(payloads) >= 48  # the 16 → 8 kHz resampler holds back less than a frame
    heard = ulaw_decode(b"".join(payloads[5:]))
    assert tone_dbfs(heard, ULAW_RATE, REP_HZ) > HEARD
    connection.abandon()


class RecordingLeg:
    """Stands in for the room's ``Leg``: keeps every frame the bridge fed, in order."""

    id = "phone"

    def __init__(self) -> None:
        self.frames: list[AudioFrame] = []

    def feed(self, frame: AudioFrame) -> None:
        self.frames.append(frame)


def recording_bridge() -> tuple[TwilioRoomLeg, RecordingLeg, WsConnection]:
    """A bridge (40 ms of jitter buffer) attached to a ``RecordingLeg``, writing to a fake socket."""
    connection = WsConnection(cast(Any, FakeSocket()))
    bridge = TwilioRoomLeg(STREAM_SID, connection.send_message_raw, connection.close, jitter_ms=40)
    leg = RecordingLeg()

    async def leave(_: str) -> None:
        return None

    bridge.attach(cast(Leg, leg), leave)
    return bridge, leg, connection


async def test_reordered_and_duplicated_packets_reach_the_room_once_and_in_order() -> None:
    bridge, leg, connection = recording_bridge()
    phone = Phone(bridge)
    # Frame n is a level of its own, so the order the room got them in can be read back.
    levels = {n: 200 * n for n in range(1, 13)}
    frames = {n: np.full(FRAME_BYTES, level, np.int16) for n, level in levels.items()}
    arrival = [1, 2, 4, 3, 3, 5, 2, 7, 6, 8, 9, 9, 10, 11, 12]  # a burst out of order, repeats
    for chunk in arrival:
        phone.send(phone.frame(chunk, frames[chunk]))
    got = [int(np.median(f.pcm)) for f in leg.frames]
    expected = [int(ulaw_decode(ulaw_encode(frames[n]))[0]) for n in range(1, 13)]
    assert got == expected, "in order, each once"
    assert all(f.sample_rate == ULAW_RATE and f.num_samples == FRAME_BYTES for f in leg.frames)
    stats = bridge.stats
    assert stats.jitter_duplicates + stats.jitter_late == 3 and stats.jitter_lost == 0
    connection.abandon()


async def test_a_lost_packet_is_concealed_and_the_voice_goes_on() -> None:
    bridge, leg, connection = recording_bridge()
    phone, caller = Phone(bridge), Tone(CALLER_HZ, ULAW_RATE)
    for chunk in range(1, 21):
        pcm = caller.next().pcm
        if chunk != 8:  # never arrives
            phone.send(phone.frame(chunk, pcm))
    assert bridge.stats.jitter_lost == 1
    assert len(leg.frames) == 20, "the gap is filled, so the room's clock stays aligned with the caller"
    connection.abandon()


async def test_the_caller_hanging_up_leaves_the_room() -> None:
    timeline = Timeline()
    room, bridge, _socket, connection, _rep = await phone_room(timeline)
    phone, caller = Phone(bridge), Tone(CALLER_HZ, ULAW_RATE)
    phone.say(caller, 1, 5)
    phone.send(stop_message(phone.seq + 1, STREAM_SID, account_sid="AC" + "2" * 32, call_sid=CALL_SID))
    await bridge.aclose()
    assert [p.id for p in room.participants] == ["rep"]
    left = timeline.of_type(EventType.ROOM_LEFT)
    assert [(e.data["participant_id"], e.data["reason"]) for e in left] == [("phone", HANGUP)]
    phone.say(caller, 6, 5)  # Twilio's last frames after stop change nothing
    assert bridge.stats.frames_in == 5
    connection.abandon()


async def test_the_socket_closing_leaves_the_room_once() -> None:
    timeline = Timeline()
    room, bridge, _socket, connection, _rep = await phone_room(timeline)
    bridge.hung_up()
    bridge.hung_up()
    await bridge.aclose()
    assert [p.id for p in room.participants] == ["rep"]
    assert len(timeline.of_type(EventType.ROOM_LEFT)) == 1
    connection.abandon()


async def test_keys_pressed_reach_the_timeline_and_bad_messages_are_skipped() -> None:
    pressed: list[str] = []
    room, bridge, _socket, connection, rep = await phone_room(on_dtmf=pressed.append)
    phone, caller = Phone(bridge), Tone(CALLER_HZ, ULAW_RATE)
    phone.send(dtmf_message(2, STREAM_SID, "5"))
    for garbage in ("not json", '{"event": "nonsense"}', '{"event": "media", "media": {"payload": "x"}}'):
        bridge.on_text(garbage)
    short = media_message(3, STREAM_SID, 1, 0, b"\xff" * 80)  # half a frame
    phone.send(short)
    phone.send({"event": "dtmf", "streamSid": STREAM_SID, "dtmf": {"digit": "x"}})
    phone.send(dtmf_message(4, STREAM_SID, "#"))
    assert pressed == ["5", "#"]
    assert bridge.stats.bad_messages == 5
    chunk = 1
    for _ in range(40):  # and the caller is still heard
        chunk = phone.say(caller, chunk, 1)
        await room.tick()
        await room.drain()
    assert tone_dbfs(rep.take(0.1), 16000, CALLER_HZ) > HEARD
    connection.abandon()


async def test_removing_the_participant_hangs_up_the_stream() -> None:
    room, bridge, socket, connection, _rep = await phone_room()
    await room.leave("phone", reason="removed")
    bridge.hang_up(1000, "removed")
    await asyncio.wait_for(connection.wait_closed(), 5)
    assert socket.closed_with == (1000, "removed")
    await bridge.write(AudioFrame(np.zeros(160, np.int16), ULAW_RATE))  # a straggler from the room
    assert socket.media() == []


async def test_a_sink_at_the_wrong_rate_is_refused() -> None:
    bridge = TwilioRoomLeg(STREAM_SID, lambda _: None, lambda *_: None)
    with pytest.raises(ValueError, match="8000"):
        await bridge.write(AudioFrame(np.zeros(320, np.int16), 16000))


# --- end to end: Parley and the local Twilio, people on phones and on the rep's socket -------------------

OBJECTION = "Honestly the price is too high for us."
COACH_NUMBER = "+12025550124"
WHISPER_HZ = 440.0
"""The tone synthesizer's frequency: the AI coach's whispered hints."""
COACH_HZ = 1500.0
WHISPER_HEARD = -35.0
"""The tone voice speaks at amplitude 0.1 (about -23 dBFS)."""


def coached_agent(**coaching: object) -> Any:
    """Rule hints (no model), and no dead-air hint while the test sets up the call."""
    settings: dict[str, object] = {
        "enabled": True,
        "use_llm": False,
        "triggers": [{"name": "dead_air", "enabled": False}],
        **coaching,
    }
    return agent(name="coached-sales", coaching=settings)


class WsLeg:
    """A participant on the rooms' browser protocol (``/v1/rooms/{id}/ws``): it speaks in real time and
    keeps what it heard (with arrival times) and every message it was sent."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[tuple[float, dict[str, Any]]] = []
        self.heard: list[tuple[float, PCM16]] = []
        self._arrived = asyncio.Event()
        self._seq = 0
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def join(cls, url: str) -> WsLeg:
        ws = await websockets.connect(url, compression=None, proxy=None, max_size=1 << 20)
        leg = cls(ws)
        await ws.send(json.dumps({"type": "start", "sample_rate": 16000}))
        await leg.message("ready")
        return leg

    async def _read(self) -> None:
        async for data in self.ws:
            if isinstance(data, bytes):
                self.heard.append((now(), decode_audio(data)[2]))
            else:
                self.messages.append((now(), json.loads(data)))
            self._arrived.set()

    async def message(
        self,
        type_: str,
        matches: Callable[[dict[str, Any]], bool] = lambda _: True,
        *,
        after: float = float("-inf"),
        limit_s: float = 10.0,
    ) -> tuple[float, dict[str, Any]]:
        """The first message of ``type_`` arriving after ``after`` that ``matches`` (waiting for it),
        with when it arrived."""
        async with asyncio.timeout(limit_s):
            while True:
                for at, message in self.messages:
                    if at > after and message.get("type") == type_ and matches(message):
                        return at, message
                self._arrived.clear()
                await self._arrived.wait()

    async def heard_until(self, t: float, limit_s: float = 5.0) -> None:
        """Wait for audio that arrived after ``t``: everything mixed before it is in."""
        async with asyncio.timeout(limit_s):
            while not self.heard or self.heard[-1][0] <= t:
                self._arrived.clear()
                await self._arrived.wait()

    def audio(self, since: float, until_: float) -> PCM16:
        chunks = [pcm for at, pcm in self.heard if since <= at <= until_]
        return np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    async def say(self, voice: Tone, seconds: float) -> None:
        """A microphone: one 20 ms frame every 20 ms on the monotonic clock."""
        start = now()
        for n in range(round(seconds / 0.02)):
            delay = start + n * 0.02 - now()
            if delay > 0:
                await asyncio.sleep(delay)
            self._seq += 1
            await self.ws.send(encode_audio(self._seq, now() * 1000, voice.next().pcm.tobytes()))

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.gather(self._reader, return_exceptions=True)


async def open_room(lab: PhoneLab, config: Any) -> str:
    await lab.add_agent(config)  # and routes PARLEY_NUMBER to it: the organization's caller id
    made = await lab.api.post("/v1/rooms", json={"agent": config.name})
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


async def join_ws(lab: PhoneLab, room_id: str, role: str) -> WsLeg:
    invited = await lab.api.post(f"/v1/rooms/{room_id}/participants", json={"role": role})
    assert invited.status_code == 201, invited.text
    return await WsLeg.join(invited.json()["ws_url"])


async def dial(lab: PhoneLab, room_id: str, to: str, role: str, **extra: str) -> tuple[str, SimulatedCaller]:
    """Dial ``to`` into the room; returns the participant id and the answered phone's caller."""
    dialed = await lab.api.post(f"/v1/rooms/{room_id}/calls", json={"to": to, "role": role, **extra})
    assert dialed.status_code == 201, dialed.text
    call = lab.twilio.call(dialed.json()["call_sid"])
    assert (call.to, call.from_) == (to, PARLEY_NUMBER)
    return str(dialed.json()["participant_id"]), await call.wait_connected()


def connected(*ids: str) -> Callable[[dict[str, Any]], bool]:
    def check(message: dict[str, Any]) -> bool:
        shown = {p["id"]: p["connected"] for p in message["participants"]}
        return all(shown.get(i) for i in ids)

    return check


async def room_participants(lab: PhoneLab, room_id: str) -> dict[str, dict[str, Any]]:
    got = await lab.api.get(f"/v1/rooms/{room_id}")
    assert got.status_code == 200, got.text
    return {p["id"]: p for p in got.json()["participants"]}


async def test_the_rep_hears_the_whisper_and_the_phone_customer_never_does(tmp_path: Path) -> None:
    async with phone_lab(tmp_path, lines=[OBJECTION, "Let me show you what it saves you."]) as lab:
        room_id = await open_room(lab, coached_agent(whisper_hints=True))
        rep = await join_ws(lab, room_id, "rep")
        customer_id, customer = await dial(lab, room_id, PERSON, "customer")
        await rep.message("participants", connected(customer_id))

        objection = speech(1.2)
        started = await customer.say(objection.pcm, objection.sample_rate)
        spoken_until = started + objection.duration
        hint_at, hint = await rep.message("hint", lambda m: m["trigger"] == "price_objection")
        assert hint_at - spoken_until < 2.0, "the hint reaches the rep within 2 s of the objection"
        whisper_until = hint_at + lab.tts.duration_for(hint["text"])
        await rep.say(Tone(REP_HZ), whisper_until - now() + 0.3)  # the rep talks over the whisper
        await rep.heard_until(whisper_until)
        await customer.press("7")

        assert heard_tone_dbfs(rep.audio(hint_at, whisper_until), 16000, WHISPER_HZ) > WHISPER_HEARD
        heard = customer.heard_audio(hint_at - 0.5, whisper_until + 0.5)
        assert tone_dbfs(heard, ULAW_RATE, WHISPER_HZ) < SILENT, "no whisper on the phone line"
        assert heard_tone_dbfs(customer.heard_audio(hint_at + 0.3, whisper_until), ULAW_RATE, REP_HZ) > HEARD

        call_id = (await lab.api.get(f"/v1/rooms/{room_id}")).json()["call_id"]
        ended = await lab.api.post(f"/v1/rooms/{room_id}/end")
        assert ended.status_code == 200, ended.text
        phone_call = lab.twilio.calls_to(PERSON)[-1]
        assert await phone_call.wait_ended() == "completed", "the room ending hangs up the phone"
        assert phone_call.hung_up_by == "app"
        await rep.close()
        record = await lab.call_record(call_id)
    events = [(e["type"], e["data"]) for e in record["events"]]
    assert ("user.dtmf", {"participant_id": customer_id, "digit": "7"}) in events
    said = [d for t, d in events if t == "room.utterance" and d["participant_id"] == customer_id]
    assert [d["text"] for d in said] == [OBJECTION] and said[0]["role"] == "customer"


async def test_a_coach_on_the_phone_whispers_to_the_rep_only_until_barging_in(tmp_path: Path) -> None:
    lines = ["Ask about their timeline.", "Hi, I am joining the call.", "Thanks."]
    async with phone_lab(tmp_path, lines=lines) as lab:
        room_id = await open_room(lab, coached_agent())
        rep = await join_ws(lab, room_id, "rep")
        customer_id, customer = await dial(lab, room_id, PERSON, "customer")
        coach_id, coach = await dial(lab, room_id, COACH_NUMBER, "coach", mode="whisper")
        await rep.message("participants", connected(customer_id, coach_id))

        voice = Tone(COACH_HZ, ULAW_RATE)
        start = await coach.say(voice.next(1.5).pcm, ULAW_RATE)
        end = start + 1.5
        await rep.heard_until(end + 0.3)
        assert heard_tone_dbfs(rep.audio(start, end + 0.3), 16000, COACH_HZ) > HEARD
        heard = customer.heard_audio(start - 0.2, end + 0.3)
        assert tone_dbfs(heard, ULAW_RATE, COACH_HZ) < SILENT, "the customer does not hear the whisper"

        barged = await lab.api.patch(f"/v1/rooms/{room_id}/participants/{coach_id}", json={"mode": "barge"})
        assert barged.status_code == 200, barged.text
        start = await coach.say(voice.next(1.0).pcm, ULAW_RATE)
        await rep.heard_until(start + 1.3)
        await until(lambda: customer.heard_audio(start + 0.9, start + 1.0).any())
        assert heard_tone_dbfs(customer.heard_audio(start + 0.2, start + 1.0), ULAW_RATE, COACH_HZ) > HEARD

        hung_up = now()
        await coach.hang_up()  # the coach leaves the room with the phone
        _, left = await rep.message(
            "participants", lambda m: coach_id not in str(m["participants"]), after=hung_up
        )
        assert customer_id in str(left["participants"])
        removed = await lab.api.delete(f"/v1/rooms/{room_id}/participants/{customer_id}")
        assert removed.status_code == 204, removed.text
        customer_call = lab.twilio.calls_to(PERSON)[-1]
        assert await customer_call.wait_ended() == "completed", "taking the customer out hangs up"
        call_id = (await lab.api.get(f"/v1/rooms/{room_id}")).json()["call_id"]
        await lab.api.post(f"/v1/rooms/{room_id}/end")
        await rep.close()
        record = await lab.call_record(call_id)
    left_events = {
        e["data"]["participant_id"]: e["data"]["reason"] for e in record["events"] if e["type"] == "room.left"
    }
    assert left_events[coach_id] == HANGUP and left_events[customer_id] == "removed"


async def test_dialing_into_a_room_is_checked_and_an_unanswered_call_withdraws_its_invitation(
    tmp_path: Path,
) -> None:
    async with phone_lab(tmp_path) as lab:
        room_id = await open_room(lab, coached_agent())
        calls = f"/v1/rooms/{room_id}/calls"
        for body in (
            {"to": PARLEY_NUMBER, "role": "customer"},  # the organization's own number
            {"to": "+19005550177", "role": "customer"},  # premium-rate: toll fraud
            {"to": PERSON, "role": "customer", "from": "+12025550188"},  # not the organization's number
            {"to": "12345", "role": "customer"},
            {"to": PERSON, "role": "agent"},
            {"to": PERSON, "role": "customer", "extra": 1},
        ):
            refused = await lab.api.post(calls, json=body)
            assert refused.status_code == 422, (body, refused.text)
        missing = await lab.api.post("/v1/rooms/room_0123456789ab/calls", json={"to": PERSON, "role": "rep"})
        assert missing.status_code == 404
        anonymous = await lab.api.post(
            calls, json={"to": PERSON, "role": "rep"}, headers={"Authorization": ""}
        )
        assert anonymous.status_code == 401
        assert lab.twilio.calls == {}, "nothing was dialed"

        # A stream must carry a live join token of the room: a forged one is closed before it joins.
        invited = await lab.api.post(f"/v1/rooms/{room_id}/participants", json={"role": "customer"})
        stream = lab.base.replace("http://", "ws://") + ROOM_STREAM_PATH
        for token in ("not-the-token", invited.json()["token"] + "x"):
            forged = SimulatedCaller(
                stream, auth_token=AUTH_TOKEN, custom_parameters={"room": room_id, "token": token}
            )
            await forged.connect()
            await forged.wait_closed(5)
            assert forged.ended_by == "server"
        unsigned = SimulatedCaller(stream, auth_token=None, custom_parameters={"room": room_id})
        with pytest.raises(InvalidStatus) as denied:
            await unsigned.connect()
        assert denied.value.response.status_code == 403
        people = (await room_participants(lab, room_id)).values()
        assert not any(p["connected"] for p in people if p["id"] != AI_COACH_ID), "nobody joined"

        lab.twilio.script(PERSON, outcomes=["busy"])
        dialed = await lab.api.post(calls, json={"to": PERSON, "role": "customer", "name": "Dana"})
        assert dialed.status_code == 201, dialed.text
        pid = dialed.json()["participant_id"]
        invitation = (await room_participants(lab, room_id))[pid]
        assert (invitation["connected"], invitation["name"]) == (False, "Dana")
        assert await lab.twilio.call(dialed.json()["call_sid"]).wait_ended() == "busy"
        async with asyncio.timeout(5):
            while pid in await room_participants(lab, room_id):  # noqa: ASYNC110  (REST state, no event)
                await asyncio.sleep(0.05)


async def test_twilios_refusal_keeps_its_code_and_invites_nobody(tmp_path: Path) -> None:
    # Parley holds another account's SID: Twilio answers 401 with its code 20003 (Authenticate).
    async with phone_lab(tmp_path, twilio_account_sid="AC" + "0" * 32) as lab:
        room_id = await open_room(lab, coached_agent())
        refused = await lab.api.post(f"/v1/rooms/{room_id}/calls", json={"to": PERSON, "role": "customer"})
        assert refused.status_code == 502, refused.text
        assert refused.json()["detail"]["twilio_code"] == 20003
        assert set(await room_participants(lab, room_id)) == {AI_COACH_ID}, "the invitation is withdrawn"
