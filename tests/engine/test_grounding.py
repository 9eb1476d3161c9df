"""A grounded agent asked about what it does not know says so, whatever its model would have said; what
it knows, statements and tool calls go ahead as before."""

from __future__ import annotations

import dataclasses

import pytest

from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import KnowledgeMiss
from parley.engine.events import EventType
from parley.engine.grounding import (
    MIN_SUPPORT,
    UNSURE_LEAD,
    GroundingCheck,
    contradicts,
    echoes_question,
    is_checked_answer,
    is_question,
    opens_with_yes,
    sentences,
)
from parley.providers.embeddings.hashing import HashingEmbedder
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
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


async def test_a_question_heard_without_its_question_mark_is_still_checked() -> None:
    said, misses = await ask(inn(), "is there. A pool near the inn.")
    assert said == UNKNOWN
    assert misses and misses[0].startswith("Yes")


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
    ("text", "question"),
    [
        ("Is there a pool?", True),
        ("Book me in.", False),
        ("Hi?  ", True),
        ("", False),
        # Speech recognition that misheard a question may drop its question mark; its opening still asks.
        ("is doctor. Merk's working this week.", True),
        ("Okay, so is there parking near you.", True),
        ("What time do you open tomorrow.", True),
        ("What's the price of a visit", True),
        ("Which day suits the dentist best.", True),
        ("My car makes a noise. Can a mechanic call me", True),
        # Asked indirectly: a statement in form, a question to answer from the facts.
        ("I was wondering if you have gluten-free bread.", True),
        ("Hi, I'm wondering whether you take walk-ins.", True),
        ("I'd like to know what a filling costs.", True),
        ("Just checking if you're open late tonight.", True),
        ("I want to know how long it takes.", True),
        ("Tell me if the shop is open on Sunday.", True),
        # Statements, orders and clipped replies that start with the same words do not.
        ("Would be great, thanks.", False),
        ("Will do.", False),
        ("Yes, do it.", False),
        ("What a lovely place.", False),
        ("What I need is a plumber.", False),
        ("Which is fine, I'll come on Tuesday.", False),
        ("When I called yesterday nobody answered.", False),
        ("Can't wait to see you.", False),
        ("Have a nice day.", False),
        ("Great, that's all I needed. Thanks. Goodbye.", False),
        ("Please send someone to 42 Maple Street, my sink is leaking.", False),
        ("I was wondering about it all week.", False),
        ("I want to know more, so book me in for Tuesday.", False),
        ("Tell me about your history.", False),
    ],
)
def test_only_questions_are_checked(text: str, question: bool) -> None:
    assert is_question(text) is question


async def test_small_talk_is_never_held() -> None:
    check = GroundingCheck(HashingEmbedder(), FACTS)
    assert await check.off_knowledge("Is there a pool?")
    assert not await check.off_knowledge("What is your name?")
    assert not await check.off_knowledge("Is breakfast included?")


# --- a "yes" no fact backs ------------------------------------------------------------------------------

MONDAYS = "The inn is closed on Mondays."
INN_FACTS = [MONDAYS, "Breakfast is included with every room."]


async def test_a_yes_no_fact_backs_becomes_the_facts_the_question_is_about() -> None:
    rules = [ScriptRule.say("monday", "Yes, you can stay on Monday.")]
    engines = dataclasses.replace(stack(["Can I stay on Mondays?"], rules), embedder=HashingEmbedder())
    _, result = await converse(inn(knowledge=INN_FACTS), engines, [UserTurn(speech(1.0))])
    assert result.turns[0].agent_text == f"{UNSURE_LEAD} {MONDAYS}"
    (miss,) = [e.payload(KnowledgeMiss) for e in result.events if e.type is EventType.KNOWLEDGE_MISS]
    assert miss.withheld == "Yes, you can stay on Monday." and miss.support is not None
    assert miss.support < MIN_SUPPORT


async def test_a_yes_a_fact_backs_is_said_as_the_model_said_it() -> None:
    rules = [ScriptRule.say("breakfast", "Yes, breakfast is included with every room.")]
    said, misses = await ask(inn(knowledge=INN_FACTS), "Is breakfast included?", rules)
    assert (said, misses) == ("Yes, breakfast is included with every room.", [])


async def test_a_promise_no_tool_kept_is_not_said() -> None:
    """Asked for what a tool does, the model said "sure" and called nothing: no fact backs that."""
    agent = inn(
        tools=[{"name": "book_taxi", "kind": "static", "result": "booked", "description": "Book a taxi."}]
    )
    rules = [ScriptRule.say("taxi", "Sure, a taxi is on its way.")]
    said, misses = await ask(agent, "Could you get me a taxi?", rules)
    assert (said, misses) == (UNKNOWN, ["Sure, a taxi is on its way."])


async def test_the_history_keeps_the_facts_said_not_the_hedge_before_them() -> None:
    """A small model copies a hedge from its history and goes on with facts of its own making."""
    rules = [
        ScriptRule.say("monday", "Yes, you can stay on Monday."),
        ScriptRule.say("breakfast", "Breakfast is included with every room."),
    ]
    lines = ["Can I stay on Mondays?", "And is breakfast included?"]
    engines = dataclasses.replace(stack(lines, rules), embedder=HashingEmbedder())
    _, result = await converse(
        inn(knowledge=INN_FACTS), engines, [UserTurn(speech(1.0)), UserTurn(speech(1.0))]
    )
    assert result.turns[0].agent_text.startswith(UNSURE_LEAD)
    assert isinstance(engines.llm, ScriptedModel)
    history = [m.content for m in engines.llm.calls[-1] if m.role == "assistant"]
    assert MONDAYS in history
    assert not any(UNSURE_LEAD in content for content in history)


@pytest.mark.parametrize(
    ("answer", "checked"),
    [
        ("Yes, we do.", True),
        ("Of course!", True),
        ("Sure thing.", True),
        ("Yesterday we were closed.", False),
        ("No, sorry.", False),
        ("We are open.", False),
    ],
)
def test_only_a_yes_is_a_yes(answer: str, checked: bool) -> None:
    assert opens_with_yes(answer) is checked


@pytest.mark.parametrize(
    ("answer", "checked"),
    [
        ("Yes, we do.", True),
        ("No, sorry.", True),
        ("Nope.", True),
        ("Unfortunately we are full.", True),
        ("I'm sorry, I don't know that.", True),
        ("I do not know.", True),
        ("I'm not sure about that.", True),
        ("We don't sell dog food.", True),
        ("We do not move pianos.", True),
        ("There is no pool.", True),
        ("We're not open on Mondays.", True),
        ("It isn't far.", True),
        ("We can't do that.", True),
        ("We do move pianos.", False),
        ("There is a pool.", False),
        ("It's noon.", False),
        ("Sorry, could you say that again?", False),
        ("Nobody has asked that before.", False),
        ("I think so.", False),
        ("We are open.", False),
    ],
)
def test_a_yes_a_no_and_an_i_dont_know_are_checked_but_not_a_question_back(
    answer: str, checked: bool
) -> None:
    assert is_checked_answer(answer) is checked


# --- a "no" or an "I don't know" the facts contradict -----------------------------------------------------

DOGS = "Dogs are not allowed at the inn."
PARKING = "The inn has free parking for guests."
MORE_FACTS = [MONDAYS, "Breakfast is included with every room.", DOGS, PARKING]


@pytest.mark.parametrize(
    ("question", "model_says", "said"),
    [
        # A fact answers the question: said as the answer, with no hedge.
        ("Are dogs allowed at the inn?", "I'm sorry, I don't know that.", DOGS),
        ("Is parking free for guests?", "No, parking is not free for guests.", PARKING),
        # Facts only loosely about it: hedged.
        ("Is there a gym at the inn?", "No, there is no gym at the inn.", f"{UNSURE_LEAD} {MONDAYS} {DOGS}"),
        ("Is there a gym at the inn?", "There is no gym at the inn.", f"{UNSURE_LEAD} {MONDAYS} {DOGS}"),
        # Right as the model said it: a "no" a fact backs; "I don't know" when no fact answers.
        ("Are dogs allowed at the inn?", "No, dogs are not allowed at the inn.", None),
        ("Is there a gym at the inn?", "I'm sorry, I don't know that.", None),
    ],
)
async def test_a_no_or_an_i_dont_know_the_facts_do_not_back_becomes_the_facts(
    question: str, model_says: str, said: str | None
) -> None:
    rules = [ScriptRule.say("inn", model_says), ScriptRule.say("parking", model_says)]
    reply, misses = await ask(inn(knowledge=MORE_FACTS), question, rules)
    assert reply == (model_says if said is None else said)
    assert misses == ([] if said is None else [model_says])


def test_a_request_after_a_description_is_judged_by_its_own_sentence_too() -> None:
    text = "My car makes a noise. Can a mechanic call me?"
    assert sentences(text) == [text, "My car makes a noise.", "Can a mechanic call me?"]
    assert sentences("Is there a pool?") == ["Is there a pool?"]


async def test_a_question_asking_for_what_a_tool_does_is_not_held() -> None:
    """Far from every fact, but a request ("Can you book me a taxi?"): the model answers it."""
    taxi = {
        "name": "book_taxi",
        "kind": "static",
        "result": "booked",
        "description": "Book a taxi to the airport.",
    }
    rules = [ScriptRule.say("taxi", "I will book one for you now.")]
    said, misses = await ask(inn(tools=[taxi]), "Can you book me a taxi?", rules)
    assert (said, misses) == ("I will book one for you now.", [])


async def test_an_answer_is_backed_when_it_restates_a_fact_not_when_it_echoes_or_says_nothing_known() -> None:
    check = GroundingCheck(HashingEmbedder(), FACTS)
    question = "Can I check out late at 2 pm tomorrow?"
    assert await check.backs(question, "Check-out time is 11 am at the inn.")
    assert not await check.backs(question, "I'm sorry, I don't know that.")
    assert not await check.backs(question, "Sure, you can check out late at 2 pm tomorrow.")
    assert not await GroundingCheck(HashingEmbedder(), []).backs(question, FACTS[0])


@pytest.mark.parametrize(
    ("model_says", "said"),
    [
        ("Parking costs ten dollars a night.", PARKING),  # a claim no fact backs: the fact instead
        ("The inn has free parking for guests.", None),
        ("Which day would you like to come?", None),  # a question back claims nothing
    ],
)
async def test_any_answer_to_a_question_a_fact_answers_is_checked(model_says: str, said: str | None) -> None:
    rules = [ScriptRule.say("parking", model_says)]
    reply, misses = await ask(inn(knowledge=MORE_FACTS), "Is parking free for guests?", rules)
    assert reply == (model_says if said is None else said)
    assert misses == ([] if said is None else [model_says])


async def test_a_fact_answers_a_question_only_when_it_is_that_close() -> None:
    check = GroundingCheck(HashingEmbedder(), MORE_FACTS)
    assert await check.answers("Is parking free for guests?")
    assert not await check.answers("Is there a gym at the inn?")
    assert not await check.answers("Parking is free for guests."), "a statement asks nothing"


# --- a "yes" that says the opposite of its fact ---------------------------------------------------------

STUDIO_FACTS = [
    "We have no showers at the studio.",
    "We treat dogs, cats and rabbits; we do not treat birds or reptiles.",
    "We do not install sprinkler systems.",
]


@pytest.mark.parametrize(
    ("question", "answer", "wrong"),
    [
        ("Can I shower after class?", "Yes, we have showers at the studio.", True),
        ("Could you put in a sprinkler system?", "Yes, we do not install sprinkler systems.", True),
        ("Can you look at my parrot, a bird?", "Yes, we treat birds.", True),
        ("Do you treat rabbits?", "Yes, we treat dogs, cats and rabbits.", False),
        ("Do you install sprinkler systems?", "No, we do not install sprinkler systems.", False),
    ],
)
async def test_a_yes_that_contradicts_the_fact_it_restates_is_not_backed(
    question: str, answer: str, wrong: bool
) -> None:
    """An embedding barely weighs a "not": these restate their fact as closely as a right answer."""
    unbacked = await GroundingCheck(HashingEmbedder(), STUDIO_FACTS).unbacked_answer(question, answer)
    assert (unbacked is not None) is wrong


@pytest.mark.parametrize(
    ("question", "answer", "fact", "contradiction"),
    [
        ("Can you groom my cat?", "Yes, we groom cats.", "We groom dogs only, not cats.", True),
        ("Can you groom my dog?", "Yes, we groom dogs.", "We groom dogs only, not cats.", False),
        ("Are you closed on Sundays?", "No, we're closed on Sundays.", "We are closed on Sundays.", False),
        ("Don't you have showers?", "Yes, we don't have showers.", "We have no showers.", False),
    ],
)
def test_contradiction_is_judged_against_the_clause_the_answer_is_about(
    question: str, answer: str, fact: str, contradiction: bool
) -> None:
    assert contradicts(question, answer, fact) is contradiction


VET_FACTS = [
    "Harbor Veterinary Clinic is open weekdays 7 am to 7 pm and Saturday 9 am to noon.",
    "We treat dogs, cats and rabbits; we do not treat birds or reptiles.",
]


@pytest.mark.parametrize(
    ("question", "answer", "echo"),
    [
        ("Do you board pets over the holidays?", "Yes, Harbor Veterinary Clinic is open on holidays.", True),
        ("Can I bring my dog in at 8 pm on a Tuesday?", "Sure, we are open at 8 pm on weekdays.", True),
        ("Are you open on Saturday?", "Yes, we are open Saturday 9 am to noon.", False),
        ("Do you see rabbits?", "Yes, we treat dogs, cats and rabbits.", False),
        ("Do you board pets over the holidays?", "No, we do not board pets.", False),
    ],
)
def test_a_claim_taking_the_questions_word_that_no_fact_has_is_an_echo(
    question: str, answer: str, echo: bool
) -> None:
    known = {w for fact in VET_FACTS for w in fact.lower().replace(",", " ").replace(";", " ").split()}
    assert echoes_question(question, answer, known) is echo


async def test_a_passage_counts_only_when_it_is_about_the_question() -> None:
    """Keyword retrieval finds a passage for any shared word; with the price gone from the documents,
    "Oslo" must not let the model make up a delivery price."""
    question = "How much does Zorblax delivery to Mars cost?"
    about = ["Zorblax Express ships parcels. Zorblax delivery to Mars costs 1234 credits."]
    unrelated = ["Replaced note: our office is in Oslo.\nRefunds take 14 days."]
    for passages, held in ((about, False), (unrelated, True)):
        check = GroundingCheck(HashingEmbedder(), [], passages=lambda _q, p=passages: p)
        assert await check.off_knowledge(question) is held


def test_a_long_first_sentence_is_checked_on_its_first_words_not_held_to_its_end() -> None:
    """The caller waits while the answer is held: a claim is clear well before a long sentence ends."""
    from parley.engine.model_rounds import MAX_VETTED_WORDS, _first_sentence

    long = "Parley is an open-source platform for real-time voice AI agents that runs fully offline"
    words = long.split()
    assert _first_sentence(" ".join(words[:MAX_VETTED_WORDS]), whole=True) is None, "still short: held"
    assert _first_sentence(" ".join(words[: MAX_VETTED_WORDS + 1]), whole=True) == " ".join(
        words[:MAX_VETTED_WORDS]
    ), "the growing last word is not judged"
    assert _first_sentence("Yes, we do. And more", whole=False) == "Yes, we do."
