"""A figure the agent was never given is no fact: an answer that restates a fact with a made-up number
("open from 7 am to 2 pm" for "7 am to 8 pm") is not backed, whatever the embedding says."""

from __future__ import annotations

import dataclasses

import pytest

from parley.engine.agent import AgentConfig
from parley.engine.figures import made_up, stated, told
from parley.engine.grounding import GroundingCheck
from parley.providers.embeddings.hashing import HashingEmbedder
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import UserTurn
from tests.engine.harness import agent as harness_agent
from tests.engine.harness import converse, speech, stack

INN = ["The inn's check-out time is 11 am.", "Breakfast is included with every room."]
HOURS = ["The car wash is open every day from 7 am to 8 pm.", "A full detail costs 180 dollars."]


@pytest.mark.parametrize(
    ("text", "figures"),
    [
        ("$1,200.00 a month", {"1200"}),
        ("open 8:00 am to 6:30 pm", {"8", "6:30"}),
        ("the 3rd of June, 24/7", {"3", "24", "7"}),
        ("4.5 stars, call 555-1234", {"4.5", "555", "1234"}),
        ("no figures here", set()),
    ],
)
def test_figures_in_digits_are_read_as_numbers(text: str, figures: set[str]) -> None:
    assert stated(text) == figures


@pytest.mark.parametrize(
    ("fact", "answer"),
    [
        ("We have three licensed plumbers.", "We have 3 plumbers."),
        ("Cleaning a two-story house costs two hundred fifty dollars.", "It costs $250."),
        ("Emergency visits are twenty-four seven.", "We come 24/7."),
        ("We close at noon on Fridays.", "On Friday we close at 12."),
        ("The fee is one thousand two hundred dollars.", "The fee is $1,200."),
        ("We open at 8:30.", "We open at 8."),
    ],
)
def test_a_figure_given_in_words_backs_the_same_figure_in_digits(fact: str, answer: str) -> None:
    assert made_up(answer, told([fact])) == set()


def test_a_figure_nothing_holds_is_made_up() -> None:
    known = told(HOURS)
    assert made_up("The shop is open from 7 am to 2 pm.", known) == {"2"}
    assert made_up("Two cats and a hundred dogs cost 100.", told(["two cats and a hundred dogs"])) == set()
    assert made_up("It is 200 dollars.", told(["two cats and a hundred dogs"])) == {"200"}


async def test_an_answer_restating_a_fact_with_a_made_up_figure_is_not_backed() -> None:
    check = GroundingCheck(HashingEmbedder(), HOURS)
    question = "Are you open every day?"
    wrong = await check.unbacked_answer(
        question, "The car wash is open every day from 7 am to 2 pm.", any_answer=True
    )
    assert wrong is not None and wrong.related[0] == HOURS[0], "the fact is said instead"
    assert await check.unbacked_answer(question, f"Yes. {HOURS[0]}", any_answer=True) is None


async def test_figures_the_caller_a_tool_or_the_prompt_gave_are_not_made_up() -> None:
    given = ["My address is 42 Maple Street.", '{"booked": "Tuesday at 3 pm"}']
    prompt = "Answer in one or two sentences. Our phone number is 555-0199."
    check = GroundingCheck(HashingEmbedder(), HOURS, instructions=prompt)
    question = "Are you open every day?"
    opening = "Yes, the car wash is open every day from 7 am to 8 pm"
    for answer in (f"{opening}, see you at 42 Maple Street.", f"{opening}; booked at 3 pm."):
        assert await check.unbacked_answer(question, answer, given=given) is None, answer
        assert await check.unbacked_answer(question, answer), "without them, the figure is made up"
    assert await check.unbacked_answer(question, f"{opening}; call 555-0199.") is None
    made_up_hours = "Yes, the car wash is open every day from 7 am to 2 pm."
    assert await check.unbacked_answer(question, made_up_hours, given=given), (
        "the prompt's words are no figures"
    )


async def test_a_call_says_the_fact_in_place_of_an_answer_with_a_figure_nobody_gave() -> None:
    """Through the engine: the model's made-up check-out time is not said, the inn's own is; a figure
    from the agent's prompt is the agent's to say."""
    prompt = "You answer the phone for the inn. Late check-out until 1 pm costs 20 dollars."
    inn = AgentConfig.model_validate(
        {
            **harness_agent().model_dump(),
            "system_prompt": prompt,
            "knowledge": INN,
            "grounded": True,
            "tools": [],
        }
    )

    async def reply(question: str, model_says: str) -> str:
        engines = dataclasses.replace(
            stack([question], [ScriptRule.say("check", model_says)]), embedder=HashingEmbedder()
        )
        _, result = await converse(inn, engines, [UserTurn(speech(1.0))])
        return result.turns[0].agent_text

    question = "Is there a late check-out at the inn?"
    said = await reply(question, "Yes, the inn's check-out time is 12 pm.")
    assert "12 pm" not in said and INN[0] in said
    said = "Yes, the inn's check-out time is 11 am, or 1 pm for 20 dollars."
    assert await reply(question, said) == said
