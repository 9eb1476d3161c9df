"""Acceptance: a supervisor joins a live AI call (a browser caller) over a WebSocket, as listen, whisper
and barge, on a served app with the fast deterministic engines, in real time.

What is measured is what people would notice: what each side's audio carried (the caller's tone, the
agent's, the supervisor's, each at its own frequency), what the agent was told, and what the call's
record keeps.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

from parley.audio.mixer import tone_dbfs
from parley.engine.events import now
from parley.providers.llm.scripted import ScriptRule
from tests.coaching.kit import api, join, tone
from tests.server.conftest import talking
from tests.supervision.kit import (
    AGENT_HZ,
    CALLER_HZ,
    HEARD_DBFS,
    LEAK_DBFS,
    SUPERVISOR_HZ,
    ai_server,
    call_record,
    events_of,
    make_ai_agent,
    start_call,
    supervise,
    switch,
)

LONG_ANSWER = (
    "We are open from nine in the morning until six in the evening on weekdays, and from ten until "
    "four on Saturdays; on Sundays and public holidays the shop stays closed all day long."
)


async def test_a_listening_supervisor_hears_both_sides_and_the_caller_never_hears_them(
    tmp_path: Path,
) -> None:
    lines = ["what are your opening hours", "they sound in a hurry"]
    rules = [ScriptRule.say("opening hours", LONG_ANSWER)]
    async with ai_server(tmp_path, lines, rules) as (served, _), api(served) as http:
        call_id, caller, caller_ear = await start_call(served, http, await make_ai_agent(http))
        invitation = await supervise(http, call_id, name="Dana")
        assert invitation["mode"] == "listen" and invitation["call_id"] == call_id
        supervisor, supervisor_ear = await join(invitation)
        async with talking(caller) as caller_mic, talking(supervisor) as supervisor_mic:
            asked_from = now()
            await caller_mic.say(tone(1.0, CALLER_HZ))
            asked_until = now()
            await caller.wait_for("agent.audio", 10, status="started")
            aside_from = now()  # the supervisor talks (to a colleague) while the agent answers
            await supervisor_mic.say(tone(0.8, SUPERVISOR_HZ))
            aside_until = now()
            await caller.wait_for("agent.audio", 10, status="stopped")
            answered_until = now()
            await supervisor.wait_for("utterance", 5, participant_id=invitation["participant_id"])
            await supervisor_ear.until(answered_until)
            await caller_ear.until(aside_until + 0.3)

        # The supervisor hears the caller, then the agent (the middles: the room's prebuffer aside).
        assert supervisor_ear.heard(asked_from + 0.3, asked_until - 0.3, CALLER_HZ) > HEARD_DBFS
        assert supervisor_ear.heard(aside_from, aside_until, AGENT_HZ) > HEARD_DBFS
        # The caller heard the agent then, and nothing of the supervisor.
        assert caller_ear.heard(aside_from, aside_until, AGENT_HZ) > HEARD_DBFS
        assert caller_ear.level(aside_from, aside_until + 0.3, SUPERVISOR_HZ) < LEAK_DBFS
        # The supervisor's page reads the conversation; the caller learns nothing of the supervisor.
        said = [(m["role"], m["text"]) for m in supervisor.of_type("transcript")]
        assert ("customer", lines[0]) in said and any(role == "agent" for role, _ in said)
        kinds = {m["type"] for m in caller.messages}
        assert not kinds & {"utterance", "participants", "note", "handover", "mode"}

        await caller.send({"type": "end"})
        ended = await supervisor.wait_for("ended", 5)
        assert ended["reason"] == "call_ended"
        await supervisor.wait_closed()
        assert supervisor.ws.close_reason == "call_ended"
        record = await call_record(http, call_id)
    joined = events_of(record, "room.joined")
    assert [(j["participant_id"], j["role"], j["mode"]) for j in joined] == [
        ("caller", "customer", "speak"),
        ("agent", "agent", "speak"),
        (invitation["participant_id"], "coach", "listen"),
    ]
    assert events_of(record, "supervisor.note") == [], "words said in listen reach nobody"
    assert [u["text"] for u in events_of(record, "room.utterance")] == [lines[1]]
    kinds_in_order = [e["type"] for e in record["events"]]
    assert kinds_in_order[-1] == "session.ended", "supervisors leave before the call's end is on the books"
    assert record["status"] == "completed"
    await caller.close()


async def test_a_whispering_supervisor_guides_the_agent_and_the_caller_hears_none_of_it(
    tmp_path: Path,
) -> None:
    note = "offer them the yearly plan"
    lines = [note, "how much is it"]
    rules = [ScriptRule.say("how much", "It is ten dollars a month, or a hundred a year.")]
    async with ai_server(tmp_path, lines, rules) as (served, model), api(served) as http:
        call_id, caller, caller_ear = await start_call(served, http, await make_ai_agent(http))
        invitation = await supervise(http, call_id)
        supervisor, _ = await join(invitation)
        pid = invitation["participant_id"]
        await switch(http, call_id, pid, "whisper")
        await supervisor.wait_for("mode", 5, participant_id=pid, new="whisper")
        async with talking(caller) as caller_mic, talking(supervisor) as supervisor_mic:
            whispered_from = now()
            await supervisor_mic.say(tone(1.0, SUPERVISOR_HZ))
            whispered_until = now()
            heard = await supervisor.wait_for("note", 5, kind="whisper")
            assert (heard["by"], heard["text"]) == (pid, note)
            await caller_mic.say(tone(1.0, CALLER_HZ))
            await caller.wait_for("agent.audio", 10, status="stopped")

        # Measured on the caller's downlink: nothing of the whisper (nothing at all, the agent was silent).
        assert caller_ear.level(whispered_from, whispered_until + 0.5, SUPERVISOR_HZ) < LEAK_DBFS
        # The agent's next reply was asked with the note, before the caller's question.
        request = [m.content for m in model.calls[-1]]
        noted = next(i for i, text in enumerate(request) if note in text)
        assert noted < request.index(lines[1])
        assert "privately" in request[noted], "a whisper is guidance the caller did not hear"
        assert not any(note in str(m) for m in caller.messages), "the caller's client never reads it"

        await caller.send({"type": "end"})
        record = await call_record(http, call_id)
    notes = events_of(record, "supervisor.note")
    assert [(n["kind"], n["by"], n["text"]) for n in notes] == [("whisper", pid, note)]
    changed = events_of(record, "room.mode_changed")
    assert [(c["participant_id"], c["old"], c["new"]) for c in changed] == [(pid, "listen", "whisper")]
    await caller.close()


async def test_a_supervisor_barges_in_takes_the_call_and_hands_it_back(tmp_path: Path) -> None:
    lines = [
        "what are your opening hours",
        "hello this is the manager speaking",
        "can I get a refund",
        "are you open on sunday",
    ]
    rules = [
        ScriptRule.say("opening hours", LONG_ANSWER),
        ScriptRule.say("refund", "Refunds take five days."),
        ScriptRule.say("sunday", "No, we are closed on Sundays."),
    ]
    async with ai_server(tmp_path, lines, rules) as (served, model), api(served) as http:
        call_id, caller, caller_ear = await start_call(served, http, await make_ai_agent(http))
        invitation = await supervise(http, call_id, name="Manager")
        supervisor, _ = await join(invitation)
        pid = invitation["participant_id"]
        async with talking(caller) as caller_mic, talking(supervisor) as supervisor_mic:
            await caller_mic.say(tone(1.0, CALLER_HZ))
            started = await caller.wait_for("agent.audio", 10, status="started")
            await caller_ear.until(started["_arrival"] + 0.4)

            barged_at = await switch(http, call_id, pid, "barge")
            cancelled = await caller.wait_for("agent.cancelled", 5)
            assert cancelled["reason"] == "handed_over"
            assert cancelled["_arrival"] - barged_at < 0.5, "the agent stops at once"
            await supervisor.wait_for("handover", 5, status="started", participant_id=pid)

            spoke_from = now()
            await supervisor_mic.say(tone(1.0, SUPERVISOR_HZ))
            spoke_until = now()
            said = await supervisor.wait_for("note", 5, kind="said")
            assert said["text"] == lines[1]
            await caller_ear.until(spoke_until + 0.2)

            mark = len(caller.messages)
            await caller_mic.say(tone(1.0, CALLER_HZ))  # asks during the barge: heard, not answered
            await caller.wait_for("transcript", 5, since=mark, final=True, text=lines[2])

            await switch(http, call_id, pid, "listen")
            await supervisor.wait_for("handover", 5, status="ended")
            mark = len(caller.messages)
            await caller_mic.say(tone(1.0, CALLER_HZ))
            answer = await caller.wait_for("agent.text", 10, since=mark)
            assert answer["text"].startswith("No, we are closed")
            await caller.wait_for("agent.audio", 10, since=mark, status="stopped")

        # The caller heard the supervisor (the middle of their words), and no agent while they had it.
        assert caller_ear.heard(spoke_from + 0.2, spoke_until - 0.2, SUPERVISOR_HZ) > HEARD_DBFS
        assert caller_ear.level(cancelled["_arrival"] + 0.3, spoke_until, AGENT_HZ) < LEAK_DBFS
        # Nothing answered the refund question: the only replies are the first (cut) and the last.
        replies = [m["text"] for m in caller.of_type("agent.text")]
        assert not any("Refunds" in text for text in replies)
        # Back with the call, the agent knows what the supervisor told the caller and what was asked.
        request = "\n".join(m.content for m in model.calls[-1])
        assert lines[1] in request and lines[2] in request

        await caller.send({"type": "end"})
        record = await call_record(http, call_id)
        wav = await http.get(f"/v1/calls/{call_id}/recording")
    kinds = [e["type"] for e in record["events"] if e["type"].startswith(("handover", "supervisor"))]
    assert kinds == ["handover.started", "supervisor.note", "handover.ended"]
    assert events_of(record, "handover.started")[0]["to"] == pid
    # The recording keeps what the caller heard: the supervisor's voice on the agent's channel.
    audio, rate = sf.read(io.BytesIO(wav.content), dtype="int16")
    agent_channel = np.ascontiguousarray(audio[:, 1])
    assert tone_dbfs(agent_channel, rate, SUPERVISOR_HZ) > -45.0
    assert tone_dbfs(np.ascontiguousarray(audio[:, 0]), rate, SUPERVISOR_HZ) < LEAK_DBFS
    await caller.close()
