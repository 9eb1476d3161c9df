"""Acceptance: a supervisor on a WebSocket leg listens to, whispers into, then barges into a phone call: the
caller is on a Twilio Media Stream through the local Twilio, the agent answers with the fast deterministic
engines.

The supervisor hears both sides; the caller's phone carries the agent, never a listening or whispering
supervisor, and a barging one's voice (measured at 8 kHz after μ-law, as the caller heard it).
"""

from __future__ import annotations

from pathlib import Path

from parley.audio.mixer import heard_tone_dbfs, tone_dbfs
from parley.engine.events import now
from parley.providers.llm.scripted import ScriptRule
from parley.twilio_sim.caller import SAMPLE_RATE
from tests.coaching.kit import join, tone
from tests.engine.harness import agent
from tests.phone.conftest import call_id_of, heard_reply, phone_lab, until
from tests.server.conftest import talking
from tests.supervision.kit import AGENT_HZ, CALLER_HZ, HEARD_DBFS, LEAK_DBFS, SUPERVISOR_HZ

SATURDAYS = "On Saturdays we open at ten and we close at four in the afternoon."
"""Long enough (2.6 s at 40 ms a character) for a supervisor to whisper while the caller hears it."""


async def test_a_supervisor_listens_and_whispers_on_a_phone_call(tmp_path: Path) -> None:
    note = "mention the loyalty card"
    lines = ["what are your opening hours", "and on saturdays", note, "this is the manager"]
    rules = [
        ScriptRule.say("opening hours", "We open at nine."),
        ScriptRule.say("saturdays", SATURDAYS),
    ]
    async with phone_lab(tmp_path, lines=lines, rules=rules) as lab:
        await lab.add_agent(agent(name="front-desk", first_message="Hello."))
        call = lab.dial_in()
        caller = await call.wait_connected()
        assert caller.started_at is not None
        await heard_reply(caller, caller.started_at)  # the greeting: the call is live
        call_id = call_id_of(call)
        made = await lab.api.post(f"/v1/calls/{call_id}/supervisors", json={"name": "Dana"})
        assert made.status_code == 201, made.text
        invitation = made.json()
        pid = invitation["participant_id"]
        supervisor, supervisor_ear = await join(invitation)
        async with talking(supervisor) as supervisor_mic:
            # Listening: the caller's question, then the agent's answer.
            asked = await caller.say(tone(1.0, CALLER_HZ), 16000)
            asked_until = now()
            answer = await heard_reply(caller, asked_until)
            await supervisor_ear.until(answer[1])
            assert supervisor_ear.heard(asked + 0.3, asked_until - 0.3, CALLER_HZ) > HEARD_DBFS
            assert supervisor_ear.heard(answer[0] + 0.1, answer[1] - 0.1, AGENT_HZ) > HEARD_DBFS

            # Whispering while the caller hears the agent's next answer.
            changed = await lab.api.patch(f"/v1/calls/{call_id}/supervisors/{pid}", json={"mode": "whisper"})
            assert changed.status_code == 200, changed.text
            await caller.say(tone(0.8, CALLER_HZ), 16000)
            asked_again = now()
            await until(lambda: caller.heard_voice(asked_again) is not None)
            whispered_from = now()
            await supervisor_mic.say(tone(1.0, SUPERVISOR_HZ))
            whispered_until = now()
            heard = await supervisor.wait_for("note", 5, kind="whisper")  # after 0.6 s of their silence
            assert (heard["by"], heard["text"]) == (pid, note)

            # Barging: the supervisor's voice goes down the phone line.
            changed = await lab.api.patch(f"/v1/calls/{call_id}/supervisors/{pid}", json={"mode": "barge"})
            assert changed.status_code == 200, changed.text
            barged_from = now()
            await supervisor_mic.say(tone(1.0, SUPERVISOR_HZ))
            barged_until = now()
            await supervisor.wait_for("note", 5, kind="said")

        on_the_phone = caller.heard_audio(whispered_from, whispered_until)
        assert heard_tone_dbfs(on_the_phone, SAMPLE_RATE, AGENT_HZ) > HEARD_DBFS, "the caller heard the agent"
        assert tone_dbfs(on_the_phone, SAMPLE_RATE, SUPERVISOR_HZ) < LEAK_DBFS, "the whisper leaked"
        assert tone_dbfs(caller.heard_audio(asked, barged_from), SAMPLE_RATE, SUPERVISOR_HZ) < LEAK_DBFS
        barged = caller.heard_audio(barged_from + 0.3, barged_until - 0.2)
        heard_supervisor = heard_tone_dbfs(barged, SAMPLE_RATE, SUPERVISOR_HZ)
        assert heard_supervisor > HEARD_DBFS, "the caller heard the supervisor"

        call.request_stop("callee")  # the caller hangs up
        ended = await supervisor.wait_for("ended", 10)
        assert ended["reason"] == "call_ended"
        await supervisor.wait_closed()
        assert await call.wait_ended() == "completed"
