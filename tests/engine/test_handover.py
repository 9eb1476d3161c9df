"""A supervisor takes a call over from the agent and gives it back; whispers reach the agent only."""

from __future__ import annotations

import asyncio

import pytest

from parley.engine.events import EventType
from parley.engine.session import SessionOptions
from parley.engine.state import TurnState
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.simulate import Conversation
from tests.engine.harness import agent, speech, stack
from tests.helpers.waiting import until

LONG_ANSWER = " ".join(["Our plans start at forty dollars a month and go up from there."] * 4)


def _types(conv: Conversation) -> list[EventType]:
    return [e.type for e in conv.timeline.events]


async def test_a_handover_silences_the_agent_and_its_turns_are_remembered_not_answered() -> None:
    lines = ["How much is it?", "That is too expensive for us.", "Okay, what about the yearly plan?"]
    rules = [
        ScriptRule.say("How much", LONG_ANSWER),
        ScriptRule.say("expensive", "I understand."),
        ScriptRule.say("yearly", "The yearly plan is two months free."),
    ]
    conv = Conversation(agent(), stack(lines, rules), SessionOptions(interim_interval_s=None))
    session = conv.session
    runner = asyncio.create_task(session.run())
    async with conv.mic:
        await conv.mic.say(speech(1.0).pcm, 16000)
        await until(lambda: session.turn is TurnState.SPEAKING)

        session.hand_over("sup-1")
        await until(lambda: EventType.REPLY_CANCELLED in _types(conv))
        cancelled = next(e for e in conv.timeline.events if e.type is EventType.REPLY_CANCELLED)
        assert cancelled.data["reason"] == "handed_over"
        assert session.handed_over

        # The caller talks to the supervisor: heard and kept, but the agent says nothing.
        mark = len(conv.timeline.events)
        await conv.mic.say(speech(1.0).pcm, 16000)
        await until(lambda: EventType.TURN_ENDED in [e.type for e in conv.timeline.events[mark:]])
        await asyncio.sleep(0.3)
        after = [e.type for e in conv.timeline.events[mark:]]
        assert EventType.TRANSCRIPT_FINAL in after
        assert EventType.LLM_REQUEST not in after and EventType.AGENT_AUDIO_STARTED not in after
        assert session.turn is TurnState.LISTENING
        session.add_note("Offer them the yearly plan.", kind="whisper", by="sup-1")
        session.add_note("Let me hand you back to our assistant.", kind="said", by="sup-1")

        session.take_back()
        mark = len(conv.timeline.events)
        await conv.mic.say(speech(1.0).pcm, 16000)
        await until(lambda: EventType.AGENT_REPLY_DONE in [e.type for e in conv.timeline.events[mark:]])
    session.end()
    await runner

    events = conv.timeline.events
    assert [e.type for e in events].count(EventType.HANDOVER_STARTED) == 1
    assert [e.type for e in events].count(EventType.HANDOVER_ENDED) == 1
    notes = [e.data for e in events if e.type is EventType.SUPERVISOR_NOTE]
    assert [(n["kind"], n["by"]) for n in notes] == [("whisper", "sup-1"), ("said", "sup-1")]
    # The agent's next answer was asked with everything that happened while it listened.
    llm = session.stack.llm
    assert isinstance(llm, ScriptedModel)
    last_request = "\n".join(m.content for m in llm.calls[-1])
    assert "That is too expensive for us." in last_request
    assert "privately" in last_request and "Offer them the yearly plan." in last_request
    assert "Let me hand you back" in last_request
    said = [e.data["text"] for e in events if e.type is EventType.AGENT_TEXT]
    assert "I understand." not in said, "the turn during the handover was never answered"
    assert said[-1] == "The yearly plan is two months free."


async def test_typed_input_during_a_handover_is_kept_not_answered() -> None:
    conv = Conversation(agent(), stack([], [ScriptRule.say("hello", "Hi there.")]), SessionOptions())
    session = conv.session
    runner = asyncio.create_task(session.run())
    await until(lambda: session.turn is TurnState.LISTENING)
    session.hand_over("sup-1")
    session.send_text("hello, anyone?")
    await asyncio.sleep(0.2)
    assert EventType.LLM_REQUEST not in _types(conv)
    assert [m.content for m in session.context.messages] == ["hello, anyone?"]
    session.take_back()
    session.send_text("hello again")
    await until(lambda: EventType.AGENT_REPLY_DONE in _types(conv))
    session.end()
    await runner


def test_a_note_of_an_unknown_kind_is_refused() -> None:
    conv = Conversation(agent(), stack([], []), SessionOptions())
    with pytest.raises(ValueError, match="whisper"):
        conv.session.add_note("hi", kind="shout")
    conv.session.add_note("   ", kind="whisper")  # nothing to say: nothing added
    assert conv.session.context.messages == []
