"""A grounded agent asked about what it does not know says so, whatever its model would have said; what
it knows, statements and tool calls go ahead as before."""

from __future__ import annotations

import dataclasses

import pytest

from parley.engine.agent import AgentConfig
from parley.engine.events import EventType
from parley.engine.grounding import GroundingCheck, is_question
from parley.providers.embeddings.hashing import HashingEmbedder
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import UserTurn
from tests.engine.harness import agent as harness_agent
from tests.engine.harness import converse, speech, stack

FACTS = ["The inn's check-out time is 11 am.", "Breakfast is included with every room."]
UNKNOWN = "I'm sorry, I don't know that. Can I take a message?"


def inn(**overrides: object) -> AgentConfig:
    settings = {**harness_agent().model_dump(), "knowledge": FACTS, "grounded": True, "tools": []}
    return AgentConfig.model_validate({**settings, **overrides})


RULES = [
    ScriptRule.say("pool", "Yes, there is a lovely pool."),
    ScriptRule.say("check-out", "Check-out is at 11 am."),
    ScriptRule.say("suitcase", "Sure, you can leave it with us."),
    ScriptRule.call("taxi", "book_taxi", {"time": "10"}),
]


async def ask(agent: AgentConfig, line: str, rules: list[ScriptRule] = RULES) -> tuple[str, list[str]]:
    engines = dataclasses.replace(stack([line], rules), embedder=HashingEmbedder())
    _, result = await converse(agent, engines, [UserTurn(speech(1.0))])
    misses = [e.data["withheld"] for e in result.events if e.type is EventType.KNOWLEDGE_MISS]
    return result.turns[0].agent_text, misses


async def test_a_question_about_nothing_it_knows_gets_the_unknown_answer_not_the_models_guess() -> None:
    said, misses = await ask(inn(), "Is there a pool?")
    assert said == UNKNOWN
    assert misses and misses[0].startswith("Yes"), "the withheld guess is on the timeline"


async def test_what_it_knows_and_what_is_not_a_question_are_answered_by_the_model() -> None:
    assert await ask(inn(), "When is check-out?") == ("Check-out is at 11 am.", [])
    assert await ask(inn(), "I will leave my suitcase at the desk.") == (
        "Sure, you can leave it with us.",
        [],
    )


async def test_a_tool_call_goes_ahead_even_for_a_question_it_knows_nothing_about() -> None:
    agent = inn(tools=[{"name": "book_taxi", "kind": "static", "result": "booked", "description": "Taxi."}])
    rules = [ScriptRule.after_tool("booked", "Your taxi is booked."), *RULES]
    said, misses = await ask(agent, "Could you get me a taxi at ten?", rules)
    assert (said, misses) == ("Your taxi is booked.", [])


async def test_off_when_not_grounded_or_no_unknown_answer() -> None:
    assert (await ask(inn(grounded=False), "Is there a pool?"))[0] == "Yes, there is a lovely pool."
    assert (await ask(inn(unknown_answer=""), "Is there a pool?"))[0] == "Yes, there is a lovely pool."


@pytest.mark.parametrize(
    ("text", "question"), [("Is there a pool?", True), ("Book me in.", False), ("Hi?  ", True), ("", False)]
)
def test_only_questions_are_checked(text: str, question: bool) -> None:
    assert is_question(text) is question


async def test_small_talk_is_never_held() -> None:
    check = GroundingCheck(HashingEmbedder(), FACTS)
    assert await check.off_knowledge("Is there a pool?")
    assert not await check.off_knowledge("What is your name?")
    assert not await check.off_knowledge("Is breakfast included?")
