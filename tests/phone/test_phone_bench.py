"""The phone benchmark's driver (``parley bench latency --transport twilio``) on the fast engines: it waits
on Parley's own event feed, measures at the caller's ear, and reads the transcript back from the record."""

from __future__ import annotations

from pathlib import Path

from parley.bench.phone import (
    PhoneConversation,
    ServerFeed,
    attach_transcript,
    fetch_call,
    heard_user_texts,
    word_error_rate,
)
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import UserTurn
from tests.engine.harness import agent, speech
from tests.phone.conftest import API_KEY, call_id_of, phone_lab


async def test_a_phone_run_is_measured_at_the_ear_and_transcribed_from_the_record(tmp_path: Path) -> None:
    lines = ["What time do you open?", "And on Sundays?"]
    rules = [ScriptRule.say("open?", "We open at nine."), ScriptRule.say("Sundays", "Sundays we are closed.")]
    async with phone_lab(tmp_path, lines=lines, rules=rules) as lab:
        await lab.add_agent(agent(name="front-desk", first_message="Hello, front desk."))
        call = lab.dial_in()
        caller = await call.wait_connected()
        call_id = call_id_of(call)
        turns = [UserTurn(speech(1.0), text=lines[0]), UserTurn(speech(0.8), text=lines[1])]
        async with ServerFeed(lab.base, call_id, API_KEY) as feed:
            run = await PhoneConversation(caller, feed, greeting=True).run(turns, answer_timeout_s=10)
        await caller.hang_up()
        await call.wait_ended()
        run.call = await fetch_call(lab.base, call_id, api_key=API_KEY)
    attach_transcript(run, run.call, [start for start, _ in run.starts])

    assert run.greeting_ms is not None and run.greeting_ms > 0  # the agent spoke first, and it was heard
    assert [t.user_text for t in run.turns] == lines
    assert [t.agent_text for t in run.turns] == ["We open at nine.", "Sundays we are closed."]
    for turn in run.turns:
        assert turn.v2v_ms is not None and turn.v2v_ms > 0 and not turn.premature
        assert turn.bargein_ms is None  # each question waited for the answer before it
    summary = run.summary()
    assert summary["transport"] == "twilio" and summary["turn_count"] == 2 and summary["call_id"] == call_id
    assert word_error_rate(lines, heard_user_texts(run.call)) == 0.0


def test_word_error_rate_counts_substitutions_insertions_and_deletions() -> None:
    assert word_error_rate(["tell me a joke"], ["tell me to joke"]) == 0.25
    assert word_error_rate(["what is parley"], ["what is it parley"]) == 1 / 3
    assert word_error_rate(["the capital of Japan"], ["the capital"]) == 0.5
    assert word_error_rate(["Hi, there!"], ["hi there"]) == 0.0  # case and punctuation are not words


def test_a_turn_that_went_on_after_a_pause_counts_once() -> None:
    events = [
        {"type": "transcript.final", "data": {"text": "Could you tell me"}},
        {"type": "transcript.final", "data": {"text": "Could you tell me a fun fact?"}},
        {"type": "agent.text", "data": {"text": "Sure."}},
        {"type": "transcript.final", "data": {"text": "Thanks."}},
    ]
    assert heard_user_texts({"events": events}) == ["Could you tell me a fun fact?", "Thanks."]
