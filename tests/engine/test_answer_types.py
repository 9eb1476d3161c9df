"""The kind of answer a question asks for: where the business is, and what something costs. A sentence
embedding matches "Where are you located?" poorly to a street address, and a price question to the fact
that holds its price."""

from __future__ import annotations

import dataclasses

import pytest

from parley.engine.agent import AgentConfig
from parley.engine.answer_types import AnswerKind, affirms_unnamed_place, asked_for, asked_place, held_by
from parley.providers.embeddings.hashing import HashingEmbedder
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import UserTurn
from tests.engine.harness import agent as harness_agent
from tests.engine.harness import converse, speech, stack

PLACE, PRICE, ALWAYS, AREA = AnswerKind.PLACE, AnswerKind.PRICE, AnswerKind.ALWAYS_OPEN, AnswerKind.AREA
HOURS = AnswerKind.HOURS
FACTS = [
    "The office is at 12 Birch Road, next to the public library.",
    "A first consultation is free.",
    "Clear aligner treatment starts at 3,500 dollars.",
]


@pytest.mark.parametrize(
    ("question", "kinds"),
    [
        ("Where exactly are you located?", {PLACE}),
        ("What's your address?", {PLACE}),
        ("Where's your office?", {PLACE}),
        ("How do I get there from the highway?", {PLACE}),
        ("What does the first visit cost?", {PRICE}),
        ("How much is weekly mowing?", {PRICE}),
        ("Are you open on Christmas Day?", {ALWAYS}),
        ("If my heat goes out at 2 in the morning, can someone come?", {ALWAYS}),
        ("Can I get someone out at night?", {ALWAYS}),
        ("Do you board pets over the holidays?", set()),
        ("Do you cover Denver?", {AREA}),
        ("Do you also come out to Capital City?", {AREA}),
        ("Do you also come out to capital city?", {AREA}),  # as speech recognition may write it
        ("Can you come to my house?", set()),
        ("Do you service window units?", set()),
        # Where something else is, and how to pay, are not about the business's place or a price.
        ("How much notice do you need?", set()),
        ("Where can I park?", set()),
        ("Where is the nearest bus stop?", set()),
        ("Can I pay by card?", set()),
        ("What time do you close?", {HOURS}),
        ("How late are you open tonight?", {HOURS, ALWAYS}),
        ("What are your hours on Saturday?", {HOURS}),
        ("When does the office open?", {HOURS}),
        ("What time would suit you for the visit?", set()),
        ("When can a plumber come out?", set()),
    ],
)
def test_what_a_question_asks_for(question: str, kinds: set[AnswerKind]) -> None:
    assert asked_for(question) == kinds


@pytest.mark.parametrize(
    ("fact", "kinds"),
    [
        (FACTS[0], {PLACE}),
        ("We are at 221B Baker Street.", {PLACE}),
        ("Harbor Veterinary is located at 40 Dock St.", {PLACE}),
        (FACTS[1], {PRICE}),
        (FACTS[2], {PRICE}),
        ("A wellness exam costs $68.", {PRICE}),
        ("We are open weekdays 7 am to 7 pm.", {HOURS}),
        ("The bistro closes at midnight on Fridays.", {HOURS}),
        ("We charge 3 dollars per drive.", {PRICE}),
        ("QuickFix serves Springfield and Shelbyville only.", {AREA}),
        ("Ridgeline Movers does local moves within Denver and Boulder.", {AREA}),
        ("Our plan covers two cleanings a year.", set()),
        ("Breakfast is served from 7 to 10.", set()),
        ("Citywide Locksmith is available 24 hours a day, 7 days a week.", {ALWAYS}),
        ("Emergency repairs are available around the clock for an extra 75 dollars.", {ALWAYS, PRICE}),
    ],
)
def test_what_a_fact_holds(fact: str, kinds: set[AnswerKind]) -> None:
    assert held_by(fact) == kinds


def office(facts: list[str] = FACTS) -> AgentConfig:
    settings = {**harness_agent().model_dump(), "knowledge": facts, "grounded": True, "tools": []}
    return AgentConfig.model_validate(settings)


async def ask(line: str, answer: str, facts: list[str] = FACTS) -> str:
    engines = dataclasses.replace(stack([line], [ScriptRule.say("", answer)]), embedder=HashingEmbedder())
    _, result = await converse(office(facts), engines, [UserTurn(speech(1.0))])
    return result.turns[0].agent_text


async def test_asked_where_it_is_the_agent_gives_its_address() -> None:
    said = await ask("Where are you located?", "We are at 12 Birch Road, next to the public library.")
    assert said == "We are at 12 Birch Road, next to the public library."


async def test_a_price_from_another_fact_is_checked_and_not_said() -> None:
    said = await ask("How much does aligner treatment cost?", "Aligner treatment is free.")
    assert not said.startswith("Aligner treatment is free") and "3,500 dollars" in said


async def test_asked_about_a_time_a_business_that_never_closes_says_so() -> None:
    facts = [
        "Citywide Locksmith is available 24 hours a day, 7 days a week.",
        "A lockout call costs 95 dollars.",
    ]
    said = await ask("Are you open on Christmas Day?", "I'm sorry, I don't know that.", facts)
    assert said == facts[0]


async def test_asked_about_a_town_it_does_not_serve_the_agent_names_those_it_does() -> None:
    facts = ["We serve Lakewood, Arvada and Golden.", "A drain cleaning costs 120 dollars."]
    said = await ask("Do you cover Denver?", "Yes, we cover Denver.", facts)
    assert said == facts[0]


async def test_a_fact_that_is_not_the_kind_asked_for_does_not_back_the_answer() -> None:
    facts = [
        "QuickFix serves Springfield and Shelbyville only.",
        "QuickFix has three licensed plumbers on call.",
    ]
    said = await ask(
        "Do you also come out to Capital City?", "Yes, QuickFix has three licensed plumbers on call.", facts
    )
    assert said == facts[0]


@pytest.mark.parametrize(
    ("answer", "wrong"),
    [
        ("Yes, we serve Denver, Arvada and Golden.", True),
        ("We serve Denver.", True),
        ("Yes, we do.", True),
        ("No, we only serve Lakewood, Arvada and Golden.", False),
        ("We serve Lakewood, Arvada and Golden.", False),
        ("We do local moves within Lakewood.", False),
    ],
)
def test_a_yes_to_a_town_the_fact_does_not_name_is_wrong(answer: str, wrong: bool) -> None:
    assert asked_place("Do you cover Denver?") == "Denver"
    assert (
        affirms_unnamed_place("Do you cover Denver?", answer, "We serve Lakewood, Arvada and Golden.")
        is wrong
    )


async def test_a_town_put_into_the_list_of_those_served_is_not_said() -> None:
    facts = ["We serve Lakewood, Arvada and Golden.", "A drain cleaning costs 120 dollars."]
    said = await ask("Do you cover Denver?", "Yes, we serve Denver, Arvada and Golden.", facts)
    assert said == facts[0]


async def test_an_answer_to_a_price_question_that_names_no_price_gives_way_to_the_price() -> None:
    facts = [
        "Citywide Locksmith is available 24 hours a day, 7 days a week.",
        "A home lockout call costs 95 dollars.",
    ]
    said = await ask(
        "How much is a lockout call to my home?", "You can call Citywide Locksmith for a lockout.", facts
    )
    assert "95 dollars" in said


async def test_asked_how_late_it_is_open_a_made_up_closing_time_gives_way_to_the_hours() -> None:
    facts = ["Sparkle Car Wash is open every day from 7 am to 8 pm.", "A full detail costs 180 dollars."]
    question = "How late is Sparkle Car Wash open tonight?"
    said = await ask(question, "The shop is open from 7 am to 2 pm.", facts)
    assert "2 pm" not in said and facts[0] in said
    right = "We are open until 8 pm."
    assert "8 pm" in await ask(question, right, facts)
