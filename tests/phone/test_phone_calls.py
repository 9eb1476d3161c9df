"""Acceptance: phone calls end to end, Parley against the local Twilio.

Each test is one thing a user of Parley would notice: a caller talks to an agent and the call is on the
books; a queued call is retried until someone answers; a voicemail is left after the beep; keypad digits
reach the agent; a caller interrupts and hears the agent stop; a caller is transferred to a person.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile as sf

from parley.engine.events import now
from parley.providers.llm.scripted import ScriptRule
from parley.twilio_sim.callee import BEEP_S
from parley.twilio_sim.caller import SAMPLE_RATE
from parley.twilio_sim.resources import SimCall
from tests.engine.harness import agent, speech
from tests.phone.conftest import (
    MS_PER_CHAR,
    PARLEY_NUMBER,
    PERSON,
    call_id_of,
    heard_reply,
    phone_lab,
    until,
)

GREETING = "Hello, this is Parley."


async def test_an_inbound_call_is_answered_and_kept_on_the_books(tmp_path: Path) -> None:
    async with phone_lab(
        tmp_path,
        lines=["What is the capital of France?"],
        rules=[ScriptRule.say("capital", "Paris, of course.")],
    ) as lab:
        await lab.add_agent(agent(name="front-desk", first_message=GREETING))
        call = lab.dial_in()
        caller = await call.wait_connected()
        assert caller.started_at is not None
        await heard_reply(caller, caller.started_at)  # the greeting
        asked = await caller.say(speech(1.0).pcm, 16000)
        answer = await heard_reply(caller, asked + 1.0)
        assert lab.tts.duration_for("Paris, of course.") - 0.1 < answer[1] - answer[0]
        call.request_stop("callee")  # the caller hangs up
        assert await call.wait_ended() == "completed"
        assert caller.ended_by == "caller"

        def settled(record: dict[str, object]) -> bool:
            costs, recording = record["costs"], record["recording"]
            return (
                isinstance(costs, dict)
                and not costs["provisional"]
                and isinstance(recording, dict)
                and recording["status"] == "ready"
            )

        record = await lab.call_record(call_id_of(call), settled)
        wav = await lab.api.get(record["recording"]["url"])
    assert record["direction"] == "inbound" and record["transport"] == "twilio"
    assert (record["from_number"], record["to_number"]) == (PERSON, PARLEY_NUMBER)
    assert record["provider_call_id"] == call.sid
    assert record["status"] == "completed" and record["end_reason"] == "caller_hung_up"
    assert [(t["speaker"], t["text"]) for t in record["transcript"]] == [
        ("agent", GREETING),
        ("user", "What is the capital of France?"),
        ("agent", "Paris, of course."),
    ]
    audio, rate = sf.read(io.BytesIO(wav.content), dtype="int16")
    assert audio.ndim == 2 and len(audio) / rate > 2.0
    assert audio[:, 0].any() and audio[:, 1].any(), "the caller and the agent are on the recording"
    lines = {line["kind"]: line for line in record["costs"]["lines"]}
    assert lines["telephony_minutes"]["quantity"] == 1 and lines["telephony_minutes"]["provider"] == "twilio"
    assert {"asr_seconds", "tts_characters"} <= set(lines)
    assert float(record["costs"]["total_usd"]) > 0


async def test_a_queued_call_is_retried_when_busy_and_completed_when_answered(tmp_path: Path) -> None:
    rules = [
        ScriptRule("good time", reply="Great, I will send the details. Goodbye!", tool="end_call"),
        ScriptRule.after_tool("ended", ""),
    ]
    async with phone_lab(tmp_path, lines=["Yes, it is a good time."], rules=rules) as lab:
        await lab.add_agent(agent(name="reminders", first_message="Hi, this is Parley. Is now a good time?"))
        lab.twilio.script(PERSON, outcomes=["busy"], say=["tone:300:0.8"], reply_gap_s=0.3)
        queued = await lab.api.post("/v1/calls", json={"agent": "reminders", "to": PERSON})
        assert queued.status_code == 202, queued.text
        job_id = queued.json()["id"]
        await until(lambda: len(lab.twilio.calls_to(PERSON)) == 2, limit_s=10)
        busy, answered = lab.twilio.calls_to(PERSON)
        assert await busy.wait_ended() == "busy"
        assert await answered.wait_ended() == "completed"
        assert answered.hung_up_by == "app"  # the agent said goodbye and Parley ended the call

        for _ in range(50):  # the job settles as the last status callback is handled
            job = (await lab.api.get(f"/v1/outbound-jobs/{job_id}")).json()
            if job["status"] != "dialing":
                break
            await asyncio.sleep(0.1)
        listed = (await lab.api.get("/v1/calls", params={"direction": "outbound"})).json()["data"]
        by_sid = {call["provider_call_id"]: call["id"] for call in listed}
        first = await lab.call_record(by_sid[busy.sid])
        second = await lab.call_record(by_sid[answered.sid])
    assert job["status"] == "completed" and job["attempts"] == 2 and job["last_call_id"] == second["id"]
    assert (first["status"], second["status"]) == ("busy", "completed")
    for record, sim_call in ((first, busy), (second, answered)):
        assert record["job_id"] == job_id and record["provider_call_id"] == sim_call.sid
        assert record["direction"] == "outbound" and record["transport"] == "twilio"
        assert (record["from_number"], record["to_number"]) == (PARLEY_NUMBER, PERSON)
    assert second["answered_by"] == "human" and second["end_reason"] == "agent_ended_call"
    assert [(t["speaker"], t["text"]) for t in second["transcript"]] == [
        ("agent", "Hi, this is Parley. Is now a good time?"),
        ("user", "Yes, it is a good time."),
        ("agent", "Great, I will send the details. Goodbye!"),
    ]


VOICEMAIL = "Hi, this is Parley about your order. Please call us back."


@dataclass
class MachineCall:
    call: SimCall
    record: dict[str, Any]
    during_beep: tuple[float, float] | None
    """Agent audio the machine heard while it beeped (its span)."""
    after_beep: tuple[float, float] | None
    """Agent audio the machine heard (recorded) after the beep."""


async def call_a_machine(tmp_path: Path, policy: str) -> MachineCall:
    """The queue calls a number an answering machine picks up (greeting, then a beep)."""
    async with phone_lab(tmp_path, lines=["Hi, you have reached Sam."]) as lab:
        telephony = {"machine": policy, "voicemail_message": VOICEMAIL}
        await lab.add_agent(agent(name="reminders", first_message="Hi!", telephony=telephony))
        lab.twilio.script(PERSON, answered_by="machine_end_beep", say=["tone:400:1.2"])
        queued = await lab.api.post("/v1/calls", json={"agent": "reminders", "to": PERSON})
        assert queued.status_code == 202, queued.text
        await until(lambda: bool(lab.twilio.calls_to(PERSON)))
        (call,) = lab.twilio.calls_to(PERSON)
        assert await call.wait_ended() == "completed"
        caller = call.caller
        assert caller is not None
        (machine,) = caller.spoken  # the greeting and its beep
        beep_end = machine.start + len(machine.pcm) / SAMPLE_RATE
        during = caller.heard_voice(beep_end - BEEP_S, beep_end)
        after = caller.heard_voice(beep_end)
        record = await lab.call_record(call_id_of(call))
    return MachineCall(call, record, during, after)


async def test_a_voicemail_is_left_after_the_beep(tmp_path: Path) -> None:
    machine = await call_a_machine(tmp_path, "voicemail")
    assert machine.during_beep is None, "nothing said over the beep"
    assert machine.after_beep is not None, "the voicemail message was left"
    start, end = machine.after_beep
    assert end - start > len(VOICEMAIL) * MS_PER_CHAR / 1000 - 0.1, "the whole message"
    assert machine.call.hung_up_by == "app"  # Parley ended the call once the message was heard
    record = machine.record
    assert record["answered_by"] == "machine_end_beep" and record["end_reason"] == "voicemail_left"
    assert record["status"] == "completed"
    assert (record["transcript"][-1]["speaker"], record["transcript"][-1]["text"]) == ("agent", VOICEMAIL)


async def test_an_answering_machine_is_hung_up_on_without_a_message(tmp_path: Path) -> None:
    machine = await call_a_machine(tmp_path, "hangup")
    assert machine.after_beep is None, "no message after the beep"
    assert machine.call.hung_up_by == "api"  # Parley asked Twilio to hang up
    record = machine.record
    assert record["answered_by"] == "machine_end_beep" and record["end_reason"] == "answering_machine"
    assert record["status"] == "completed"
    assert VOICEMAIL not in [t["text"] for t in record["transcript"]]


async def test_keypad_digits_reach_the_agent(tmp_path: Path) -> None:
    rules = [ScriptRule.say("[keypad] 4 2 #", "Extension forty two, putting you through.")]
    async with phone_lab(tmp_path, rules=rules) as lab:
        await lab.add_agent(agent(name="front-desk", first_message=GREETING))
        call = lab.dial_in()
        caller = await call.wait_connected()
        assert caller.started_at is not None
        await heard_reply(caller, caller.started_at)
        pressed = now()
        for digit in "42#":
            await caller.press(digit)
        answer = await heard_reply(caller, pressed)
        call.request_stop("callee")
        assert await call.wait_ended() == "completed"
        record = await lab.call_record(call_id_of(call))
    assert answer[1] - answer[0] > lab.tts.duration_for("Extension forty two, putting you through.") - 0.1
    asked = [m.content for m in lab.llm.calls[-1] if m.role == "user"]
    assert asked[-1] == "[keypad] 4 2 #", "the model was given the digits"
    assert [e["data"]["digit"] for e in record["events"] if e["type"] == "user.dtmf"] == ["4", "2", "#"]
    assert [(t["speaker"], t["text"]) for t in record["transcript"]][-2:] == [
        ("user", "[keypad] 4 2 #"),
        ("agent", "Extension forty two, putting you through."),
    ]


LONG_ANSWER = (
    "We have three rooms for you to pick from. The blue room has a view of the lake and a desk. "
    "The green room is by the garden and it has two beds. The red room is at the top of the house "
    "and it has a bath."
)


async def test_a_caller_interrupts_and_the_transcript_keeps_what_they_heard(tmp_path: Path) -> None:
    lines = ["Which rooms do you have?", "Stop, the blue one please."]
    rules = [ScriptRule.say("rooms", LONG_ANSWER), ScriptRule.say("blue one", "The blue room it is.")]
    # Parley sends audio 200 ms ahead, so Twilio's buffer holds more than the 100 ms between two marks:
    # the clear always drops audio with a mark in it.
    async with phone_lab(tmp_path, lines=lines, rules=rules, audio_output_lead_ms=200) as lab:
        await lab.add_agent(agent(name="front-desk", first_message=GREETING))
        call = lab.dial_in()
        caller = await call.wait_connected()
        assert caller.started_at is not None
        await heard_reply(caller, caller.started_at)
        asked = await caller.say(speech(1.0).pcm, 16000)
        asked_end = asked + 1.2
        await until(lambda: caller.heard_voice(asked_end, now()) is not None)
        reply = caller.heard_voice(asked_end, now())
        assert reply is not None
        await asyncio.sleep(2.0)  # the caller listens to part of the long answer
        interrupted = await caller.say(speech(1.0).pcm, 16000)
        onset = interrupted + 0.1  # speech() starts with 100 ms of silence
        await heard_reply(caller, interrupted + 1.2)  # the answer to the interruption
        stopped = caller.silent_at(onset)
        call.request_stop("callee")
        assert await call.wait_ended() == "completed"
        record = await lab.call_record(call_id_of(call))
    assert caller.clears_received >= 1, "Parley told Twilio to drop the rest of the answer"
    assert caller.marks_cleared >= 1, "marks of audio never played came back as cleared"
    assert stopped is not None, "the agent was still talking when the caller spoke"
    assert stopped - onset < 1.0, "the agent's voice stopped at the caller's ear"
    heard_s = stopped - reply[0]
    assert heard_s < lab.tts.duration_for(LONG_ANSWER) - 2.0, "most of the answer was never heard"
    cut = next(t for t in record["transcript"] if t["interrupted"])
    assert cut["speaker"] == "agent" and LONG_ANSWER.startswith(cut["text"])
    # The tone TTS speaks MS_PER_CHAR per character, so the kept text says how long the caller listened.
    # It never claims more than they heard (a space between clauses is not spoken: a few tens of ms),
    # and loses at most the word cut off (dropped whole) and what marks, 100 ms apart, cannot prove.
    kept_s = len(cut["text"]) * MS_PER_CHAR / 1000
    detail = f"kept {cut['text']!r} ({kept_s:.2f} s), heard {heard_s:.2f} s"
    assert heard_s - 0.6 < kept_s < heard_s + 0.25, detail
    assert [(t["speaker"], t["text"]) for t in record["transcript"]][-2:] == [
        ("user", "Stop, the blue one please."),
        ("agent", "The blue room it is."),
    ]


async def test_the_agent_transfers_a_caller_to_sales(tmp_path: Path) -> None:
    sales = "+14155550142"
    tools = [{"name": "transfer_call", "destinations": {"sales": sales}}]
    rules = [
        ScriptRule(
            "sales",
            reply="Sure, putting you through to sales.",
            tool="transfer_call",
            arguments={"destination": "sales"},
        ),
        ScriptRule.after_tool("transferred", ""),
    ]
    async with phone_lab(tmp_path, lines=["Can I talk to sales?"], rules=rules) as lab:
        await lab.add_agent(agent(name="front-desk", first_message=GREETING, tools=tools))
        lab.twilio.transfer_hold_s = 0.3
        call = lab.dial_in()
        caller = await call.wait_connected()
        assert caller.started_at is not None
        await heard_reply(caller, caller.started_at)
        asked = await caller.say(speech(1.0).pcm, 16000)
        await caller.wait_closed(10.0)  # Twilio ends the stream as it dials sales
        said = caller.heard_voice(asked + 1.2)
        assert await call.wait_ended() == "completed"
        record = await lab.call_record(call_id_of(call))
    assert said is not None, "the caller heard the agent say it is putting them through"
    # Twilio drops what it has not played when the call leaves the stream: the line was heard whole.
    heard_whole = lab.tts.duration_for("Sure, putting you through to sales.") - 0.03  # < 1 character
    assert said[1] - said[0] > heard_whole, "the caller heard the agent out before being put through"
    (transfer,) = call.transfers
    assert (transfer.target, transfer.kind, transfer.status) == (sales, "number", "completed")
    assert any("<Dial>" in twiml and sales in twiml for twiml in call.twiml)
    assert record["end_reason"] == "transferred" and record["status"] == "completed"
    calls = [e["data"] for e in record["events"] if e["type"] == "tool.call"]
    assert [(c["tool"], c["arguments"]) for c in calls] == [("transfer_call", {"destination": "sales"})]
