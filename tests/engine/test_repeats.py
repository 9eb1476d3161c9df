"""A reply that copies what the agent said to another question is not said: the small model reads its
own earlier answer as the best example of one, and the fact check backs a copied fact."""

from __future__ import annotations

import dataclasses

from parley.engine.agent import AgentConfig
from parley.engine.events import EventType
from parley.engine.repeats import EarlierLines, echo_verdict, without_line
from parley.providers.embeddings.hashing import HashingEmbedder
from parley.providers.llm.base import ChatMessage
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import UserTurn
from tests.engine.harness import agent as harness_agent
from tests.engine.harness import converse, speech, stack

FACTS = ["The inn's check-out time is 11 am.", "Breakfast is included with every room."]
BREAKFAST = "Breakfast is included with every room."


def _history(*pairs: tuple[str, str]) -> list[ChatMessage]:
    return [m for q, a in pairs for m in (ChatMessage("user", q), ChatMessage("assistant", a))]


def test_a_reply_is_held_only_while_it_may_still_be_a_copy() -> None:
    lines = EarlierLines.of(_history(("Is breakfast included?", BREAKFAST)), "When is check-out?")
    assert lines.verdict("Break") is None, "still the start of the earlier answer"
    assert lines.verdict("Breakfast is included") is None
    assert lines.verdict("Breakfast is served") == "", "it went its own way: said at once"
    assert lines.verdict("Check") == ""
    copied = "breakfast, is included with every room!"
    assert lines.verdict(copied) is None, "a sentence is known to end once the next one begins"
    assert lines.verdict(copied + " We") == copied
    assert lines.verdict("Breakfast is included with every room", finished=True)
    assert lines.verdict("Breakfast is included", finished=True) == ""


def test_the_same_question_again_short_lines_questions_and_own_lines_may_be_repeated() -> None:
    asked_again = EarlierLines.of(
        _history(("Is breakfast included?", BREAKFAST)), "Sorry, is breakfast included?"
    )
    assert asked_again.verdict(BREAKFAST, finished=True) == ""
    history = _history(
        ("Hi there.", "Sure, I can help."),
        ("Can you help?", "What would you like to book today?"),
        ("Is there a pool?", "I'm sorry, I don't know that. Can I take a message?"),
    )
    lines = EarlierLines.of(
        history, "Do you have a gym?", ["I'm sorry, I don't know that. Can I take a message?"]
    )
    for said in ("Sure, I can help.", "What would you like to book today?", "I'm sorry, I don't know that."):
        assert lines.verdict(said, finished=True) == "", said


def inn() -> AgentConfig:
    settings = {**harness_agent().model_dump(), "knowledge": FACTS, "grounded": True, "tools": []}
    return AgentConfig.model_validate(settings)


async def test_a_copied_answer_to_another_question_gives_way_to_the_facts_about_this_one() -> None:
    rules = [ScriptRule.say("breakfast", BREAKFAST), ScriptRule.say("check-out", BREAKFAST)]
    lines = ["Is breakfast included?", "When is check-out?"]
    engines = dataclasses.replace(stack(lines, rules), embedder=HashingEmbedder())
    _, result = await converse(inn(), engines, [UserTurn(speech(1.0)), UserTurn(speech(1.0))])
    first, second = (turn.agent_text for turn in result.turns)
    assert first == BREAKFAST
    assert "11 am" in second and "Breakfast" not in second
    misses = [e.data["withheld"] for e in result.events if e.type is EventType.KNOWLEDGE_MISS]
    assert misses == [BREAKFAST], "the copy is on the timeline, not said"


async def test_the_same_answer_to_the_same_question_asked_again_is_said() -> None:
    rules = [ScriptRule.say("breakfast", BREAKFAST)]
    lines = ["Is breakfast included?", "Sorry, is breakfast included?"]
    engines = dataclasses.replace(stack(lines, rules), embedder=HashingEmbedder())
    _, result = await converse(inn(), engines, [UserTurn(speech(1.0)), UserTurn(speech(1.0))])
    assert [turn.agent_text for turn in result.turns] == [BREAKFAST, BREAKFAST]


def test_a_clause_of_an_earlier_line_counts_as_a_copy() -> None:
    history = _history(
        ("I have MetLife, is that okay?", "We accept Delta Dental and Cigna; we do not accept MetLife."),
        (
            "Can you fix my window unit?",
            "I can't confirm that, but here is what I know: We do not service window units.",
        ),
    )
    lines = EarlierLines.of(history, "Do you do teeth whitening?")
    assert lines.verdict("We do not accept MetLife.", finished=True)
    assert lines.verdict("We do not service window units. We", finished=True)


def test_a_copy_with_or_without_a_yes_or_no_before_it_is_the_same_line() -> None:
    """The model copied "No, BrightSmile Orthodontics does not accept MetLife." to "Do you do teeth
    whitening?" without its "No,"; a "Yes, sorry," before a copy does not hide it either."""
    history = _history(
        ("I have MetLife, is that okay?", "No, BrightSmile Orthodontics does not accept MetLife."),
        ("Is breakfast included?", BREAKFAST),
    )
    lines = EarlierLines.of(history, "Do you do teeth whitening?")
    assert lines.verdict("BrightSmile Orthodontics does not accept MetLife.", finished=True)
    assert lines.verdict("Yes, sorry, breakfast is included with every room.", finished=True)
    assert lines.verdict("No,") is None, "only a lead so far: it may still be a copy"
    assert lines.verdict("No, we do not do teeth whitening.", finished=True) == ""
    kept = without_line(
        [*history, ChatMessage("user", "Do you do teeth whitening?")],
        "No, breakfast is included with every room.",
    )
    assert [m.content for m in kept] == [
        "I have MetLife, is that okay?",
        "No, BrightSmile Orthodontics does not accept MetLife.",
        "Do you do teeth whitening?",
    ]


def test_asked_again_a_sentence_that_restates_the_copied_line_is_a_copy_too() -> None:
    """Asked once more without the exchange it copied, the model may say the same fact in other words;
    an answer that claims something else is said as it comes."""
    history = _history(
        ("I have MetLife, is that okay?", "We accept Delta Dental and Cigna; we do not accept MetLife."),
    )
    lines = EarlierLines.of(history, "Do you do teeth whitening?").again("We do not accept MetLife.")
    restated = "BrightSmile Orthodontics does not accept MetLife."
    assert lines.verdict("BrightSmile Orthodontics does not") is None, "held until the sentence ends"
    assert lines.verdict(restated, finished=True) == restated
    assert lines.verdict("Yes, we accept MetLife.", finished=True) == "", "the opposite claim is not a copy"
    assert lines.verdict("I'm sorry, I don't know that. Can I", finished=False) == ""
    assert lines.verdict("We offer teeth whitening for 300 dollars. It", finished=False) == ""
    short = EarlierLines.of(history, "Do you do teeth whitening?").again("Yes, sure.")
    assert short.verdict("Sure, teeth", finished=False) == "", "too little said to be restated: not held"


def test_a_reply_is_held_only_while_it_may_still_be_the_callers_words_said_back() -> None:
    asked = "Halond is an oil change take."
    assert echo_verdict("Halond is", asked) is None
    assert echo_verdict("An oil change takes", asked) == "", "its own words: said at once"
    assert echo_verdict("Halond is an oil change take", asked) is None, "it may yet go on"
    assert echo_verdict("Halond is an oil change take. What", asked) == "Halond is an oil change take."
    assert (
        echo_verdict("Halond is an oil change take", asked, finished=True) == "Halond is an oil change take"
    )
    assert echo_verdict("Halond is an oil change taken care of", asked) == ""
    assert echo_verdict("Thank you!", "Thank you.", finished=True) == "", "short lines are said back"
    two = "My car is noisy. Can a mechanic call me?"
    assert echo_verdict("My car is noisy. I", two) == "", "decided once its first sentence ends"


async def test_the_callers_words_said_back_give_way_to_the_facts_about_them() -> None:
    garbled = "The inn's check-out time is leaven."
    rules = [ScriptRule.say("leaven", garbled)]
    engines = dataclasses.replace(stack([garbled], rules), embedder=HashingEmbedder())
    _, result = await converse(inn(), engines, [UserTurn(speech(1.0))])
    assert "11 am" in result.turns[0].agent_text
    misses = [e.data["withheld"] for e in result.events if e.type is EventType.KNOWLEDGE_MISS]
    assert misses == [garbled]
