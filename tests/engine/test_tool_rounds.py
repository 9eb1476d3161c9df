"""What a reply does with what a small model gets wrong about tools: asking again for a call it already
made, writing something that is neither words nor a call, hanging up in the same breath as acting, and
taking an action left over from an earlier turn when the caller says goodbye."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Callable

import pytest

from parley import Agent
from parley.engine.events import EventType
from parley.engine.options import EngineStack
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec, Usage
from parley.simulate import UserTurn
from tests.engine.harness import agent as harness_agent
from tests.engine.harness import converse, speech, stack

Script = Callable[[list[ChatMessage], list[ToolSpec] | None], list[LLMChunk]]


class Scripted:
    """A model whose every answer comes from ``script``; it keeps what it was offered each round."""

    name = "scripted-rounds"

    def __init__(self, script: Script) -> None:
        self.script = script
        self.offered: list[list[str]] = []

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        self.offered.append([t.name for t in tools or []])
        for chunk in self.script(messages, tools):
            yield chunk
        yield LLMChunk(usage=Usage(1, 1), finish_reason="stop")

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        return None


def engines(llm: Scripted, line: str) -> EngineStack:
    return dataclasses.replace(stack([line], []), llm=llm)


def shop() -> tuple[Agent, list[str]]:
    agent = Agent(
        "shop",
        endpointing=harness_agent().endpointing,
        tools=[{"name": "end_call", "description": "Hang up."}],
    )
    runs: list[str] = []

    @agent.tool
    async def find_order(order: str) -> str:
        """Look an order up."""
        runs.append(order)
        return "shipped"

    return agent, runs


async def test_a_call_asked_for_again_is_not_run_twice_and_the_model_answers_without_tools() -> None:
    def again_and_again(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if not tools:
            return [LLMChunk(text="Your order has shipped.")]
        return [LLMChunk(tool_call=ToolCall(f"c{len(messages)}", "find_order", {"order": "42"}))]

    agent, runs = shop()
    llm = Scripted(again_and_again)
    _, result = await converse(agent.config, engines(llm, "Where is order 42?"), [UserTurn(speech(1.0))])
    assert runs == ["42"], "the same lookup ran more than once"
    assert result.turns[0].agent_text == "Your order has shipped."
    assert llm.offered[-1] == [] and "find_order" in llm.offered[0]


async def test_a_round_with_neither_words_nor_a_call_is_asked_again_without_tools() -> None:
    def invents(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        return [] if tools else [LLMChunk(text="Hello, how can I help?")]

    agent, _ = shop()
    _, result = await converse(agent.config, engines(Scripted(invents), "Hi there."), [UserTurn(speech(0.8))])
    assert result.turns[0].agent_text == "Hello, how can I help?"


async def test_hanging_up_together_with_another_action_waits_for_the_caller() -> None:
    def books_and_leaves(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if any(m.role == "tool" for m in messages):
            return [LLMChunk(text="It has shipped. Anything else?")]
        return [
            LLMChunk(tool_call=ToolCall("a", "find_order", {"order": "7"})),
            LLMChunk(tool_call=ToolCall("b", "end_call", {})),
        ]

    agent, runs = shop()
    _, result = await converse(
        agent.config, engines(Scripted(books_and_leaves), "Where is order 7?"), [UserTurn(speech(1.0))]
    )
    assert runs == ["7"]
    called = [e.data["tool"] for e in result.events if e.type is EventType.TOOL_CALL]
    assert called == ["find_order"]
    assert [e.data["reason"] for e in result.events if e.type is EventType.SESSION_ENDED] == [
        "simulation_done"
    ]
    assert result.turns[0].agent_text == "It has shipped. Anything else?"


async def test_hanging_up_right_after_another_action_waits_for_the_caller_too() -> None:
    def then_leaves(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if not tools:
            return [LLMChunk(text="It has shipped.")]
        if any(m.role == "tool" for m in messages):
            return [LLMChunk(tool_call=ToolCall("b", "end_call", {}))]
        return [LLMChunk(tool_call=ToolCall("a", "find_order", {"order": "9"}))]

    agent, runs = shop()
    _, result = await converse(
        agent.config, engines(Scripted(then_leaves), "Where is order 9?"), [UserTurn(speech(1.0))]
    )
    assert runs == ["9"]
    assert [e.data["tool"] for e in result.events if e.type is EventType.TOOL_CALL] == ["find_order"]
    assert [e.data["reason"] for e in result.events if e.type is EventType.SESSION_ENDED] == [
        "simulation_done"
    ]
    assert result.turns[0].agent_text == "It has shipped."


async def test_a_call_written_as_text_is_not_read_aloud_and_the_caller_is_asked_again() -> None:
    """Markup in every round (a call cut off by the token limit, the example's tool named as text):
    nothing usable came of the turn, so the caller hears the error message instead of silence."""

    def writes_json(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        return [] if tools else [LLMChunk(text='{"name": '), LLMChunk(text='"book_pickup", "arguments": {')]

    agent, _ = shop()
    conversation, result = await converse(
        agent.config, engines(Scripted(writes_json), "Book me for Thursday."), [UserTurn(speech(0.8))]
    )
    assert result.turns[0].agent_text == agent.config.error_message
    assert not [e for e in result.events if e.type is EventType.TOOL_CALL]
    errors = [e.data for e in result.events if e.type is EventType.ERROR]
    assert [e["stage"] for e in errors] == ["llm"]
    history = [(m.role, m.content) for m in conversation.session.context.messages]
    assert history[-1] == ("assistant", agent.config.error_message)


async def test_an_action_with_nothing_said_after_it_is_not_followed_by_the_error_message() -> None:
    """The action ran: asking the caller to say it again would have it done twice."""

    def acts_silently(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if any(m.role == "tool" for m in messages):
            return []
        return [LLMChunk(tool_call=ToolCall("a", "find_order", {"order": "5"}))]

    agent, runs = shop()
    _, result = await converse(
        agent.config, engines(Scripted(acts_silently), "Where is order 5?"), [UserTurn(speech(1.0))]
    )
    assert runs == ["5"]
    assert result.turns[0].agent_text == ""
    assert not [e for e in result.events if e.type is EventType.ERROR]


def bookings() -> tuple[Agent, list[str]]:
    agent = Agent(
        "salon",
        endpointing=harness_agent().endpointing,
        tools=[{"name": "end_call", "description": "Hang up."}],
    )
    booked: list[str] = []

    @agent.tool(side_effect=True)
    async def book(day: str) -> str:
        """Book a haircut."""
        booked.append(day)
        return "booked"

    return agent, booked


async def test_an_action_taken_earlier_in_the_call_is_not_taken_again_when_the_model_copies_it() -> None:
    """Told "Bye", a small model repeats the call's booking between two hang-ups: it books once."""

    def copies(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if messages[-1].role == "tool":
            return [LLMChunk(text="You're booked for Tuesday.")]
        if "Bye" in messages[-1].content:
            return [
                LLMChunk(tool_call=ToolCall(f"e{len(messages)}", "end_call", {})),
                LLMChunk(tool_call=ToolCall(f"b{len(messages)}", "book", {"day": "Tuesday"})),
                LLMChunk(tool_call=ToolCall(f"f{len(messages)}", "end_call", {})),
            ]
        return [LLMChunk(tool_call=ToolCall("b1", "book", {"day": "Tuesday"}))]

    agent, booked = bookings()
    llm = Scripted(copies)
    lines = ["Book me for Tuesday.", "Thanks. Bye."]
    _, result = await converse(
        agent.config,
        dataclasses.replace(stack(lines, []), llm=llm),
        [UserTurn(speech(1.0)), UserTurn(speech(0.8))],
    )
    assert booked == ["Tuesday"], "the copied booking was made again"
    assert [e.data["tool"] for e in result.events if e.type is EventType.TOOL_CALL] == ["book", "end_call"]
    assert [e.data["reason"] for e in result.events if e.type is EventType.SESSION_ENDED] == [
        "agent_ended_call"
    ]


def books_with_the_goodbye(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
    """Told "… bye", books Thursday between two hang-ups; the first request gets words only."""
    if messages[-1].role == "tool":
        return [LLMChunk(text="You're booked for Thursday.")]
    if "bye" not in messages[-1].content.lower():
        return [LLMChunk(text="Which day would you like?")]
    return [
        LLMChunk(tool_call=ToolCall(f"e{len(messages)}", "end_call", {})),
        LLMChunk(tool_call=ToolCall(f"b{len(messages)}", "book", {"day": "Thursday"})),
        LLMChunk(tool_call=ToolCall(f"f{len(messages)}", "end_call", {})),
    ]


async def test_an_action_left_over_from_an_earlier_turn_is_not_taken_when_the_caller_says_goodbye() -> None:
    """The booking asked for two turns ago was never made; "Alright, goodbye." does not make it."""
    agent, booked = bookings()
    lines = ["Can you book me in for Thursday?", "Alright, goodbye."]
    _, result = await converse(
        agent.config,
        dataclasses.replace(stack(lines, []), llm=Scripted(books_with_the_goodbye)),
        [UserTurn(speech(1.0)), UserTurn(speech(0.8))],
    )
    assert booked == []
    assert [e.data["tool"] for e in result.events if e.type is EventType.TOOL_CALL] == ["end_call"]
    assert [e.data["reason"] for e in result.events if e.type is EventType.SESSION_ENDED] == [
        "agent_ended_call"
    ]


async def test_an_action_asked_for_with_the_goodbye_is_taken_and_the_caller_hears_it() -> None:
    agent, booked = bookings()
    _, result = await converse(
        agent.config,
        engines(Scripted(books_with_the_goodbye), "Book me for Thursday then, bye."),
        [UserTurn(speech(1.0))],
    )
    assert booked == ["Thursday"]
    assert result.turns[0].agent_text == "You're booked for Thursday."
    assert [e.data["reason"] for e in result.events if e.type is EventType.SESSION_ENDED] == [
        "simulation_done"
    ]


async def test_a_confirmation_naming_a_day_nobody_gave_is_said_plainly() -> None:
    """The model copies the example call's "booked for Friday" after a booking for Tuesday."""

    def copies_the_example(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if messages[-1].role == "tool":
            return [LLMChunk(text="Done: you're booked "), LLMChunk(text="for Friday. Anything else?")]
        return [LLMChunk(tool_call=ToolCall("b1", "book", {"day": "Tuesday"}))]

    agent, booked = bookings()
    _, result = await converse(
        agent.config, engines(Scripted(copies_the_example), "Book me for Tuesday."), [UserTurn(speech(1.0))]
    )
    assert booked == ["Tuesday"]
    assert result.turns[0].agent_text == "Done. Anything else?"
    (miss,) = [e.data for e in result.events if e.type is EventType.KNOWLEDGE_MISS]
    assert miss["invented"] == ["friday"] and "Friday" in miss["withheld"]


async def test_the_answer_after_a_lookup_is_not_a_confirmation() -> None:
    def looks_up(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if messages[-1].role == "tool":
            return [LLMChunk(text="It shipped on March 3. Anything else?")]
        return [LLMChunk(tool_call=ToolCall("a", "find_order", {"order": "12"}))]

    agent, runs = shop()
    _, result = await converse(
        agent.config, engines(Scripted(looks_up), "Where is order 12?"), [UserTurn(speech(1.0))]
    )
    assert runs == ["12"]
    assert result.turns[0].agent_text == "It shipped on March 3. Anything else?"


async def test_after_a_failed_action_the_models_words_are_said_as_they_are() -> None:
    """A failure is not "Done.", whatever the model names in telling it."""
    agent = Agent("salon", endpointing=harness_agent().endpointing)

    @agent.tool(side_effect=True)
    async def book(day: str) -> str:
        """Book a haircut."""
        raise RuntimeError("calendar unreachable")

    def tells(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if messages[-1].role == "tool":
            return [LLMChunk(text="Sorry, we are full on Friday. Could we try Monday?")]
        return [LLMChunk(tool_call=ToolCall("b1", "book", {"day": "Tuesday"}))]

    _, result = await converse(
        agent.config, engines(Scripted(tells), "Book me for Tuesday."), [UserTurn(speech(1.0))]
    )
    assert [e.data["ok"] for e in result.events if e.type is EventType.TOOL_RESULT] == [False]
    assert result.turns[0].agent_text == "Sorry, we are full on Friday. Could we try Monday?"


async def test_after_an_action_the_model_is_not_offered_the_hang_up() -> None:
    """What follows a tool's result is telling the caller what it did: a hang-up then is not offered."""

    def books(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if messages[-1].role == "tool":
            return [LLMChunk(text="You're booked for Friday.")]
        return [LLMChunk(tool_call=ToolCall("b1", "book", {"day": "Friday"}))]

    agent, booked = bookings()
    llm = Scripted(books)
    _, result = await converse(agent.config, engines(llm, "Book me for Friday."), [UserTurn(speech(1.0))])
    assert booked == ["Friday"] and result.turns[0].agent_text == "You're booked for Friday."
    assert sorted(llm.offered[0]) == ["book", "end_call"] and llm.offered[1] == ["book"]


@pytest.mark.parametrize("goodbye", ["Bye now, take care!", None])
async def test_hanging_up_says_the_agents_goodbye_not_the_models_words(goodbye: str | None) -> None:
    """After its closing tool a small model copies its last answer; the agent's goodbye is said instead
    (or, set to null, the model's words)."""

    def leaves(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        if messages[-1].role == "tool":
            return [LLMChunk(text="Done: you're booked. Anything else?")]
        return [LLMChunk(tool_call=ToolCall("e1", "end_call", {}))]

    agent, _ = shop()
    agent.config.goodbye_message = goodbye
    _, result = await converse(agent.config, engines(Scripted(leaves), "Bye then."), [UserTurn(speech(0.8))])
    assert result.turns[0].agent_text == (goodbye or "Done: you're booked. Anything else?")
    assert [e.data["reason"] for e in result.events if e.type is EventType.SESSION_ENDED] == [
        "agent_ended_call"
    ]


class KeepsTools(Scripted):
    """A model that takes ``allowed_tools`` (as the llama.cpp chat adapter does): it records which tools
    each round could call, besides those in its prompt."""

    takes_allowed_tools = True

    def __init__(self, script: Script) -> None:
        super().__init__(script)
        self.allowed: list[frozenset[str] | None] = []

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        allowed_tools: frozenset[str] | None = None,
    ) -> AsyncIterator[LLMChunk]:
        self.allowed.append(allowed_tools)
        async for chunk in super().stream(messages, tools, max_tokens=max_tokens, temperature=temperature):
            yield chunk


def _looks_up_then_says(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
    if any(m.role == "tool" for m in messages):
        return [LLMChunk(text="It has shipped.")]
    return [LLMChunk(tool_call=ToolCall("a", "find_order", {"order": "3"}))]


async def test_after_an_action_the_prompt_keeps_its_tools_and_only_what_may_be_called_changes() -> None:
    """The tools open a chat prompt: taking the hang-up out of them after an action made the model read
    the whole prompt again (about 7 s on 2 cores). A model that takes ``allowed_tools`` keeps them all
    in its prompt and is told which it may call; any other is offered only those."""
    agent, runs = shop()
    keeps = KeepsTools(_looks_up_then_says)
    _, result = await converse(agent.config, engines(keeps, "Where is order 3?"), [UserTurn(speech(1.0))])
    assert runs == ["3"] and result.turns[0].agent_text == "It has shipped."
    assert keeps.offered == [["end_call", "find_order"], ["end_call", "find_order"]]
    assert keeps.allowed == [None, frozenset({"find_order"})]

    agent, runs = shop()
    plain = Scripted(_looks_up_then_says)
    _, result = await converse(agent.config, engines(plain, "Where is order 3?"), [UserTurn(speech(1.0))])
    assert runs == ["3"] and result.turns[0].agent_text == "It has shipped."
    assert plain.offered == [["end_call", "find_order"], ["find_order"]]
