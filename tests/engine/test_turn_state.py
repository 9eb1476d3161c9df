"""The session's turn state: one enum, legal moves in one table, and what a client sees of it."""

from __future__ import annotations

import asyncio

from parley.engine.events import Event, EventType, Timeline
from parley.engine.session import Session
from parley.engine.state import TURN_TRANSITIONS, SessionState, TurnState
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import UserTurn
from parley.simulation import Loudspeaker
from tests.engine.harness import agent, converse, speech, stack, types

LONG_ANSWER = (
    "Paris is the capital of France, and it is famous for the Eiffel Tower, the Louvre, "
    "wide boulevards, long lunches and a river called the Seine that runs through it."
)


def test_every_turn_state_has_a_row_a_public_face_and_a_way_to_end() -> None:
    assert set(TURN_TRANSITIONS) == set(TurnState)
    assert TURN_TRANSITIONS[TurnState.ENDED] == frozenset()
    for state, targets in TURN_TRANSITIONS.items():
        assert isinstance(state.public, SessionState)
        assert state not in targets, f"{state} lists itself (a no-op is not a transition)"
        if state is not TurnState.ENDED:
            assert TurnState.ENDED in targets, f"{state} cannot end"
    # What clients were always told stays the same four words.
    assert {s.public for s in TurnState} == set(SessionState)


async def test_interrupt_stops_the_agent_and_gives_the_floor_back() -> None:
    """The page's stop button: "Speaking" must not stay on screen, and the idle timeout must run."""
    timeline = Timeline()
    speaking = asyncio.Event()

    def on_event(event: Event) -> None:
        if event.type is EventType.AGENT_AUDIO_PLAYED:  # the first clause was heard
            speaking.set()

    timeline.subscribe(on_event)
    session = Session(agent(first_message=LONG_ANSWER), stack([], []), Loudspeaker(), timeline)
    runner = asyncio.create_task(session.run())
    try:
        await asyncio.wait_for(speaking.wait(), 10)
        before = session.turn
        assert before is TurnState.SPEAKING
        session.interrupt()
        assert session.state is SessionState.LISTENING
        assert session.turn is TurnState.LISTENING
        assert session.idle, "nothing pending after an interrupt: the idle timeout may run"
        states = [e.data["new"] for e in timeline.of_type(EventType.STATE_CHANGED)]
        assert states[-2:] == ["speaking", "listening"]
        cancelled = timeline.of_type(EventType.REPLY_CANCELLED)
        assert cancelled and cancelled[0].data["reason"] == "interrupt"
        session.interrupt()  # nothing to stop: harmless
        assert session.turn is TurnState.LISTENING
    finally:
        session.end("hangup")
        await asyncio.wait_for(runner, 5)
    heard = cancelled[0].data["heard_text"]
    assert heard and LONG_ANSWER.startswith(heard) and len(heard) < len(LONG_ANSWER)
    assert [(m.role, m.content) for m in session.context.messages] == [("assistant", heard)]


async def test_barge_in_is_an_interrupted_turn_then_the_callers_turn() -> None:
    lines = ["Tell me about Paris.", "Stop, tell me about Rome instead."]
    rules = [ScriptRule.say("Rome", "Rome is the capital of Italy."), ScriptRule.say("Paris", LONG_ANSWER)]
    _, result = await converse(
        agent(), stack(lines, rules), [UserTurn(speech(1.0)), UserTurn(speech(1.2), 1500)]
    )
    changes = [(e.data["new"], e.data["turn"]) for e in result.events if e.type is EventType.STATE_CHANGED]
    assert ("listening", "interrupted") in changes
    after = changes[changes.index(("listening", "interrupted")) + 1 :]
    assert after[:2] == [("processing", "thinking"), ("speaking", "speaking")]


async def test_speech_the_agent_talks_over_is_not_answered() -> None:
    """Interruptions off: the caller's words over the agent neither stop it nor become a turn."""
    rules = [ScriptRule.say("Paris", LONG_ANSWER)]
    conv, result = await converse(
        agent(interruption={"enabled": False}),
        stack(["Tell me about Paris."], rules),
        [UserTurn(speech(1.0)), UserTurn(speech(0.8), 1200)],
    )
    kinds = types(result)
    assert EventType.BARGE_IN not in kinds and EventType.REPLY_CANCELLED not in kinds
    finals = [e.data["text"] for e in result.events if e.type is EventType.TRANSCRIPT_FINAL]
    assert finals == ["Tell me about Paris."], "the talked-over speech was not transcribed as a turn"
    assert [m.content for m in conv.session.context.messages] == ["Tell me about Paris.", LONG_ANSWER]
