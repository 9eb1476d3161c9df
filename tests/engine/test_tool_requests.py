"""A caller's request reaches its tool even when the small model answers it with words; a call whose
arguments the model made up does not go ahead, and the model's own answer is said instead."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from parley.engine.agent import AgentConfig
from parley.engine.event_payloads import ToolCalled, ToolRequested
from parley.engine.events import EventType
from parley.engine.tool_requests import (
    asked_in,
    callers_arguments,
    made_up_contact,
    made_up_detail,
    unheard_values,
)
from parley.providers.embeddings.hashing import HashingEmbedder
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.simulate import UserTurn
from tests.engine.harness import agent as harness_agent
from tests.engine.harness import converse, speech, stack
from tests.helpers.embedders import CountingEmbedder

FACTS = ["QuickFix serves Springfield only.", "A service visit costs 95 dollars."]
VISIT = {
    "name": "schedule_visit",
    "description": "Send a plumber to the caller's address to fix a leak.",
    "kind": "static",
    "result": {"ok": True},
    "side_effect": True,
    "parameters": {
        "type": "object",
        "properties": {"address": {"type": "string"}, "problem": {"type": "string"}},
        "required": ["address", "problem"],
    },
}
REQUEST = "Please send a plumber to 42 Maple Street, the kitchen sink has a leak."
DONE = ScriptRule.after_tool("ok", "A plumber is on the way.")


def plumber() -> AgentConfig:
    settings = {**harness_agent().model_dump(), "knowledge": FACTS, "grounded": True, "tools": [VISIT]}
    return AgentConfig.model_validate(settings)


def template(address: str) -> ScriptRule:
    """The arguments the model gives when asked for the call (its pattern never matches a message)."""
    return ScriptRule.call(
        "(never said)", "schedule_visit", {"address": address, "problem": "kitchen sink leak"}
    )


async def call(
    line: str, rules: list[ScriptRule], embedder: HashingEmbedder | None = None
) -> tuple[str, list[ToolCalled], list[ToolRequested], Any]:
    engines = dataclasses.replace(stack([line], rules), embedder=embedder or HashingEmbedder())
    _, result = await converse(plumber(), engines, [UserTurn(speech(1.0))])
    calls = [e.payload(ToolCalled) for e in result.events if e.type is EventType.TOOL_CALL]
    asked = [e.payload(ToolRequested) for e in result.events if e.type is EventType.TOOL_REQUESTED]
    assert isinstance(engines.llm, ScriptedModel)
    return result.turns[0].agent_text, calls, asked, engines.llm


async def test_a_request_the_model_answers_with_words_still_reaches_its_tool() -> None:
    rules = [ScriptRule.say("maple", "I'm sorry, I don't know that."), template("42 Maple Street"), DONE]
    said, calls, asked, llm = await call(REQUEST, rules)
    assert said == "A plumber is on the way."
    assert [(c.tool, c.arguments["address"]) for c in calls] == [("schedule_visit", "42 Maple Street")]
    assert [(a.tool, a.accepted) for a in asked] == [("schedule_visit", True)]
    assert llm.tool_choices[0] == "schedule_visit"
    assert llm.strict[0], "a statement's call must come back with its arguments"


async def test_a_call_with_made_up_arguments_is_dropped_and_the_models_answer_said() -> None:
    rules = [ScriptRule.say("maple", "What is wrong with the sink?"), template("123 Elm Street"), DONE]
    said, calls, asked, _ = await call(REQUEST, rules)
    assert said == "What is wrong with the sink?"
    assert calls == []
    assert [(a.tool, a.accepted, a.arguments) for a in asked] == [
        ("schedule_visit", False, {"address": "123 Elm Street", "problem": "kitchen sink leak"})
    ]


async def test_a_yes_without_the_call_to_a_request_asked_as_a_question_becomes_the_call() -> None:
    question = "Can a plumber come to 42 Maple Street to fix the kitchen sink leak?"
    rules = [ScriptRule.say("maple", "Yes, a plumber can come."), template("42 Maple Street"), DONE]
    said, calls, asked, llm = await call(question, rules)
    assert said == "A plumber is on the way."
    assert [c.tool for c in calls] == ["schedule_visit"] and [a.accepted for a in asked] == [True]
    assert llm.tool_choices[:2] == [None, "schedule_visit"], "the model answered first; its yes was not said"
    assert llm.strict[:2] == [False, False], "a question's call may come back empty, which is quick"


async def test_a_request_asked_as_a_question_and_answered_with_no_fact_becomes_the_call() -> None:
    """The model, having said "I don't know" before, says it again to a request: not said, the call."""
    question = "Can a plumber come to 42 Maple Street to fix the kitchen sink leak?"
    rules = [ScriptRule.say("maple", "I'm sorry, I don't know that."), template("42 Maple Street"), DONE]
    said, calls, asked, llm = await call(question, rules)
    assert said == "A plumber is on the way."
    assert [c.tool for c in calls] == ["schedule_visit"] and [a.accepted for a in asked] == [True]
    assert llm.tool_choices[:2] == [None, "schedule_visit"]


async def test_an_answer_no_fact_backs_is_said_when_the_request_gives_no_call() -> None:
    question = "Can a plumber come to my house to fix the kitchen sink leak?"
    rules = [ScriptRule.say("house", "What is your address?"), template("123 Elm Street"), DONE]
    said, calls, asked, _ = await call(question, rules)
    assert said == "What is your address?"
    assert calls == [] and [a.accepted for a in asked] == [False]


async def test_an_answer_a_fact_backs_is_said_without_asking_for_the_call() -> None:
    question = "Can a plumber come to 42 Maple Street in Shelbyville to fix the leak?"
    rules = [
        ScriptRule.say("maple", "Sorry, QuickFix serves Springfield only."),
        template("42 Maple Street"),
        DONE,
    ]
    said, calls, asked, llm = await call(question, rules)
    assert (said, calls, asked) == ("Sorry, QuickFix serves Springfield only.", [], [])
    assert set(llm.tool_choices) == {None}


async def test_a_questions_call_takes_no_words_from_the_callers_earlier_messages() -> None:
    """A question near a tool is no request for what the caller said before it."""
    rules = [
        ScriptRule.say("live", "Okay."),
        ScriptRule.say("fix", "I'm sorry, I don't know that."),
        template("42 Maple Street"),
        DONE,
    ]
    lines = ["I live at 42 Maple Street.", "Do you fix a kitchen sink leak like mine?"]
    engines = dataclasses.replace(stack(lines, rules), embedder=HashingEmbedder())
    _, result = await converse(plumber(), engines, [UserTurn(speech(1.0)), UserTurn(speech(1.0))])
    asked = [e.payload(ToolRequested) for e in result.events if e.type is EventType.TOOL_REQUESTED]
    assert not [e for e in result.events if e.type is EventType.TOOL_CALL]
    assert [a.accepted for a in asked] == [False]
    assert result.turns[1].agent_text == "I'm sorry, I don't know that."


async def two_turns(
    lines: list[str], rules: list[ScriptRule]
) -> tuple[list[ToolCalled], list[ToolRequested]]:
    engines = dataclasses.replace(stack(lines, rules), embedder=HashingEmbedder())
    _, result = await converse(plumber(), engines, [UserTurn(speech(1.0)), UserTurn(speech(1.0))])
    calls = [e.payload(ToolCalled) for e in result.events if e.type is EventType.TOOL_CALL]
    asked = [e.payload(ToolRequested) for e in result.events if e.type is EventType.TOOL_REQUESTED]
    return calls, asked


async def test_a_statements_call_takes_no_words_from_an_earlier_question_about_something_else() -> None:
    """After "Do you serve Shelbyville?", a request to send a plumber is no request to send one there."""
    rules = [
        ScriptRule.say("shelbyville", "Sorry, QuickFix serves Springfield only."),
        ScriptRule.say("send", "What is your address?"),
        template("Shelbyville"),
        DONE,
    ]
    lines = ["Do you serve Shelbyville?", "Please send a plumber to fix my kitchen sink leak."]
    calls, asked = await two_turns(lines, rules)
    assert calls == []
    assert [(a.arguments or {}).get("address") for a in asked][-1:] == ["Shelbyville"]
    assert not any(a.accepted for a in asked)


async def test_a_statements_call_takes_words_from_an_earlier_question_asking_for_it() -> None:
    rules = [
        ScriptRule.say("maple", "What is the problem?"),
        ScriptRule.say("send", "What is your address?"),
        template("42 Maple Street"),
        DONE,
    ]
    lines = ["Can a plumber come to 42 Maple Street to fix a leak?", "Please send him, my sink leaks."]
    calls, asked = await two_turns(lines, rules)
    assert [(c.tool, c.arguments["address"]) for c in calls] == [("schedule_visit", "42 Maple Street")]
    assert asked[-1].accepted


async def test_the_checks_embed_the_callers_words_and_the_tool_descriptions_once() -> None:
    """The question is judged against the facts and against the tools: one embedding serves both."""
    question = "Can a plumber come to 42 Maple Street to fix the kitchen sink leak?"
    rules = [ScriptRule.say("maple", "Yes, a plumber can come."), template("42 Maple Street"), DONE]
    embedder = CountingEmbedder()
    await call(question, rules, embedder)
    assert question in embedder.seen and VISIT["description"] in embedder.seen
    assert sorted(embedder.seen) == sorted(set(embedder.seen))


async def test_a_request_not_to_do_it_is_left_to_the_model() -> None:
    rules = [ScriptRule.say("maple", "All right, nobody will come."), template("42 Maple Street")]
    refusal = "Please don't send a plumber to 42 Maple Street for the leak."
    said, calls, asked, llm = await call(refusal, rules)
    assert (said, calls, asked) == ("All right, nobody will come.", [], [])
    assert set(llm.tool_choices) == {None}


async def test_words_far_from_every_tool_are_left_to_the_model() -> None:
    rules = [ScriptRule.say("springfield", "We only serve Springfield."), template("42 Maple Street")]
    said, calls, asked, llm = await call("I live in Springfield, near the river.", rules)
    assert (said, calls, asked) == ("We only serve Springfield.", [], [])
    assert set(llm.tool_choices) == {None}


@pytest.mark.parametrize(
    ("arguments", "grounded"),
    [
        ({"address": "42 Maple Street", "problem": "the sink leaks"}, True),
        ({"address": "42 maple st.", "problem": "leaking"}, True),  # its words, shortened
        ({"address": "123 Elm Street", "problem": "leak"}, False),  # only "street" is the caller's
        ({"address": "42 Maple Street"}, False),  # a required argument missing
        ({"address": "42 Maple Street", "problem": "the"}, False),  # nothing but a filler word
    ],
)
def test_arguments_count_only_when_the_caller_said_them(arguments: dict[str, str], grounded: bool) -> None:
    said = ["My name is Dana.", "Please send someone to 42 Maple Street, my sink is leaking."]
    assert (callers_arguments(arguments, ["address", "problem"], said) == arguments) is grounded


def test_days_numbers_and_earlier_turns_ground_a_booking() -> None:
    said = ["My name is Dana Lee.", "A table for four on Wednesday at 7 pm, please."]
    booking = {"name": "Dana", "party_size": 4, "day": "Wed", "time": "7:00 pm"}
    assert callers_arguments(booking, list(booking), said) == booking
    assert callers_arguments({**booking, "day": "Monday"}, list(booking), said) is None
    assert callers_arguments({}, [], said) is None, "a tool with nothing required is never matched by words"


def test_an_optional_argument_nobody_said_is_left_out() -> None:
    said = ["My Honda Civic grinds when I brake. Can a mechanic call me with a quote?"]
    call = {"vehicle": "Honda Civic", "issue": "grinding brakes", "phone": "123-456-7890"}
    assert callers_arguments(call, ["vehicle", "issue"], said) == {
        "vehicle": "Honda Civic",
        "issue": "grinding brakes",
    }


# --- contact details the model made up, in its own calls -------------------------------------------------

QUOTE = {
    "name": "request_quote",
    "description": "Have a mechanic call the caller back with a repair quote.",
    "kind": "static",
    "result": {"ok": True},
    "parameters": {
        "type": "object",
        "properties": {"issue": {"type": "string"}, "phone": {"type": "string"}},
        "required": ["issue"],
    },
}


@pytest.mark.parametrize(
    ("line", "phone", "kept"),
    [
        ("My brakes grind, a quote please.", "123-456-7890", False),
        ("My brakes grind, a quote please. Call me at 555 0134.", "555-0134", True),
        ("My brakes grind, a quote please. Call me at five five five zero one three four.", "5550134", True),
    ],
)
async def test_a_phone_number_nobody_gave_is_left_out_of_the_models_own_call(
    line: str, phone: str, kept: bool
) -> None:
    agent = AgentConfig.model_validate({**harness_agent().model_dump(), "tools": [QUOTE]})
    rules = [ScriptRule.call("brakes", "request_quote", {"issue": "grinding brakes", "phone": phone}), DONE]
    engines = dataclasses.replace(stack([line], rules), embedder=HashingEmbedder())
    _, result = await converse(agent, engines, [UserTurn(speech(1.0))])
    (called,) = [e.payload(ToolCalled) for e in result.events if e.type is EventType.TOOL_CALL]
    assert called.arguments == (
        {"issue": "grinding brakes", "phone": phone} if kept else {"issue": "grinding brakes"}
    )
    assert called.dropped == ([] if kept else ["phone"])


@pytest.mark.parametrize(
    ("value", "made_up"),
    [
        ("123-456-7890", True),
        ("(555) 0134", False),
        ("+1 555 013 4567", False),  # the caller's number, with its country code
        ("priya@example.com", False),
        ("john.doe@example.com", True),
        ("42 Maple Street", False),  # not a contact detail: other checks judge it
        (7, False),
    ],
)
def test_a_contact_detail_counts_only_when_someone_gave_it(value: object, made_up: bool) -> None:
    known = ["Call me at 555 013 4567, or 555 0134.", "It's priya at example dot com."]
    assert made_up_contact(value, known) is made_up


@pytest.mark.parametrize(
    ("arguments", "message", "asked"),
    [
        ({"day": "Thursday"}, "Alright, goodbye.", False),
        ({"dog": "beagle", "day": "Thursday"}, "Thanks, that's all.", False),
        ({"day": "Thursday"}, "Book me for Thursday then, bye.", True),
        ({"dog": "Biscuit", "day": "Friday"}, "Biscuit on Thursday please, bye", True),
        ({}, "Bye.", True),
    ],
)
def test_a_call_is_asked_in_a_message_that_gives_one_of_its_arguments(
    arguments: dict[str, str], message: str, asked: bool
) -> None:
    assert asked_in(arguments, message) is asked


@pytest.mark.parametrize(
    ("said", "known", "unheard"),
    [
        (
            "Done: you're booked for Friday.",
            ["Come to 18 Birch Lane.", '{"address": "18 Birch Lane"}'],
            ["friday"],
        ),
        ("You're booked for Thursday at 3.", ["Thursday at three, please."], []),
        ("We'll see you on Fridays at 9.", ["Fri 9 am works."], []),
        ("Order 7 has shipped.", ['{"order": "7"}', '{"status": "shipped"}'], []),
        ("A technician is on the way to 7 Aspen Court.", ["Please send a tech to 12 Aspen Court."], ["7"]),
        ("You may hear from us in March.", ["Call me back."], ["march"]),
        ("See you Friday.", ["You are a friendly receptionist.", "Book me in, please."], ["friday"]),
        ("Table for twenty at 12.", ["Twenty of us, at noon please."], []),
        ("Table for 20 at 12.", ["Fifteen of us, at noon please."], ["20"]),
    ],
)
def test_a_confirmation_names_only_days_months_and_numbers_someone_gave(
    said: str, known: list[str], unheard: list[str]
) -> None:
    assert unheard_values(said, known) == unheard


# --- names and days the model made up --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "value", "made_up"),
    [
        ("name", "John Doe", True),
        ("customer_name", "Priya Shah", False),  # the caller said it
        ("owner", "Harbor Vet", False),  # the agent's prompt gives it
        ("day", "Friday", True),  # the example call's day
        ("day", "Tuesday", False),
        ("day", "Wednesday", True),
        ("address", "42 Maple Street", False),  # neither a name nor a date: other checks judge it
        ("phone", "123-456-7890", True),
        ("party_size", 2, False),
    ],
)
def test_a_name_or_day_counts_only_when_someone_gave_it(argument: str, value: object, made_up: bool) -> None:
    known = ["You answer calls for Harbor Vet.", "Book me for Tuesday. My name is Priya Shah."]
    assert made_up_detail(argument, value, known) is made_up


def test_a_day_worked_out_from_tomorrow_is_not_made_up() -> None:
    assert not made_up_detail("day", "Wednesday", ["Today is Tuesday.", "Can I come tomorrow?"])


BOOKING = {
    "name": "book_cleaning",
    "description": "Book a teeth cleaning.",
    "kind": "static",
    "result": {"ok": True},
    "side_effect": True,
    "parameters": {
        "type": "object",
        "properties": {"name": {"type": "string"}, "day": {"type": "string"}},
        "required": ["name", "day"],
    },
}


@pytest.mark.parametrize(
    ("line", "asked"),
    [
        ("Book me a cleaning for Tuesday.", True),
        ("Book me a cleaning for Tuesday, my name is John Doe.", False),
    ],
)
async def test_a_call_with_a_made_up_name_is_not_run_and_the_caller_is_asked(line: str, asked: bool) -> None:
    agent = AgentConfig.model_validate({**harness_agent().model_dump(), "tools": [BOOKING]})
    rules = [
        ScriptRule.call("cleaning", "book_cleaning", {"name": "John Doe", "day": "Tuesday"}),
        ScriptRule.after_tool("ok", "You're booked for Tuesday."),
    ]
    engines = dataclasses.replace(stack([line], rules), embedder=HashingEmbedder())
    _, result = await converse(agent, engines, [UserTurn(speech(1.0))])
    (outcome,) = [e.data for e in result.events if e.type is EventType.TOOL_RESULT]
    if asked:
        assert result.turns[0].agent_text == "Could I have your name, please?"
        assert outcome["ok"] is False and "your name" in outcome["result"], "the booking was not made"
    else:
        assert result.turns[0].agent_text == "You're booked for Tuesday."
        assert outcome["ok"] is True


async def test_a_price_asked_near_a_tool_is_answered_by_the_price() -> None:
    """ "How much to fix my leak?" is close to what the plumber's visit does, yet it asks a price: the
    model's "You can call QuickFix to fix your leak." names none, so the price is said."""
    rules = [ScriptRule.say("", "You can call QuickFix to fix your leak.")]
    said, calls, _, _ = await call("How much to send a plumber to fix my leak?", rules)
    assert "95 dollars" in said and "You can call" not in said
    assert calls == []


async def test_a_price_named_near_a_tool_is_said_as_the_model_put_it() -> None:
    rules = [ScriptRule.say("", "A service visit costs 95 dollars, and a plumber can come today.")]
    said, _, _, _ = await call("How much to send a plumber to fix my leak?", rules)
    assert said == "A service visit costs 95 dollars, and a plumber can come today."


async def test_a_request_written_as_a_call_to_a_tool_the_agent_lacks_reaches_its_one_tool() -> None:
    """The 0.5B model answered "Book me for Monday at 7 Birch Road." with the example call's tool,
    which the agent does not have: nothing was done, and the caller heard the error line."""
    misnamed = '{"name": "book_pickup", "arguments": {"address": "42 Maple Street", "problem": "leak"}}'
    line = "The kitchen sink at 42 Maple Street has a leak."
    rules = [ScriptRule.say("maple", misnamed), template("42 Maple Street"), DONE]
    said, calls, _, llm = await call(line, rules)
    assert llm.tool_choices[:2] == [None, "schedule_visit"], "asked for the call after the misnamed one"
    assert [(c.tool, c.arguments["address"]) for c in calls] == [("schedule_visit", "42 Maple Street")]
    assert said == "A plumber is on the way."

    made_up = [ScriptRule.say("maple", misnamed), template("123 Elm Street"), DONE]
    said, calls, _, _ = await call(line, made_up)
    assert calls == [], "the call still takes only the caller's own words"


async def test_a_tools_call_is_asked_for_once_in_a_reply() -> None:
    """A statement near the agent's one tool is asked for its call; when that call's address was made
    up and the model then writes the example's tool, the call is not asked for again."""
    misnamed = '{"name": "book_pickup", "arguments": {"address": "42 Maple Street", "problem": "leak"}}'
    rules = [ScriptRule.say("maple", misnamed), template("123 Elm Street"), DONE]
    _, calls, asked, llm = await call(REQUEST, rules)
    assert calls == []
    assert [(a.tool, a.accepted) for a in asked] == [("schedule_visit", False)]
    assert llm.tool_choices.count("schedule_visit") == 1, llm.tool_choices
