"""The default instruct model (Qwen2.5-Coder 0.5B) through its chat template: answers from the facts
given, native tool calls with arguments, the agent's prefix cached, cancellation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import pytest

from parley.providers.llm.base import ChatMessage, LLMChunk, ToolSpec
from parley.providers.llm.llamacpp import LlamaCppModel, _calls_unallowed
from tests.helpers.llm_assets import qwen_gguf
from tests.helpers.llm_streams import cancel_after

pytestmark = pytest.mark.models

CLINIC = ChatMessage(
    "system",
    "You are the receptionist of a vet clinic, on the phone. Answer in one short sentence.\n"
    "# What you know\n- A vaccination visit costs 65 dollars.\n- The vet is Dr. Ruth Okafor.",
)
BOOK = ToolSpec(
    "book_visit",
    "Book a visit for a pet.",
    {
        "type": "object",
        "properties": {"pet": {"type": "string"}, "day": {"type": "string"}},
        "required": ["pet", "day"],
    },
)

END = ToolSpec("end_call", "End the call when the caller says goodbye or has nothing else.")


@pytest.fixture(scope="module")
def model() -> Iterator[LlamaCppModel]:
    llm = LlamaCppModel(qwen_gguf(), chat=True)
    yield llm
    llm.close()


async def ask(
    model: LlamaCppModel, messages: list[ChatMessage], tools: list[ToolSpec] | None = None
) -> list[LLMChunk]:
    return [chunk async for chunk in model.stream(messages, tools, max_tokens=48)]


def spoken(chunks: list[LLMChunk]) -> str:
    return "".join(c.text for c in chunks)


async def test_answers_from_the_facts_in_its_system_message(model: LlamaCppModel) -> None:
    # Without tools: with a booking tool on offer this small model sometimes books instead of answering
    # (the quality bench counts how often); here the facts path alone is checked.
    text = spoken(await ask(model, [CLINIC, ChatMessage("user", "How much is a vaccination visit?")]))
    assert "65" in text
    text = spoken(await ask(model, [CLINIC, ChatMessage("user", "What's the vet's name?")]))
    assert "Okafor" in text
    for markup in ("<", "{", "*", "#"):
        assert markup not in text


async def test_a_request_becomes_a_native_tool_call_with_its_arguments(model: LlamaCppModel) -> None:
    said = "Please book a visit for my dog Rex on Thursday."
    chunks = await ask(model, [CLINIC, ChatMessage("user", said)], [BOOK])
    calls = [c.tool_call for c in chunks if c.tool_call]
    assert [c.name for c in calls] == ["book_visit"]
    assert "rex" in str(calls[0].arguments.get("pet", "")).lower()
    assert "thu" in str(calls[0].arguments.get("day", "")).lower()
    assert chunks[-1].finish_reason == "tool_calls" and spoken(chunks) == ""


async def test_a_required_tool_is_called_with_the_callers_words_or_with_nothing(
    model: LlamaCppModel,
) -> None:
    said = "My cat Luna needs her shots, we can come on Wednesday."
    chunks = [
        c async for c in model.stream([CLINIC, ChatMessage("user", said)], [BOOK], tool_choice="book_visit")
    ]
    calls = [c.tool_call for c in chunks if c.tool_call]
    assert [c.name for c in calls] == ["book_visit"] and spoken(chunks) == ""
    assert "luna" in str(calls[0].arguments).lower() or "cat" in str(calls[0].arguments).lower()
    assert "wed" in str(calls[0].arguments.get("day", "")).lower()
    # Nothing in the words to fill it with: the call comes back with its arguments missing, not invented.
    asked = "How much is a vaccination visit?"
    chunks = [
        c async for c in model.stream([CLINIC, ChatMessage("user", asked)], [BOOK], tool_choice="book_visit")
    ]
    calls = [c.tool_call for c in chunks if c.tool_call]
    assert [c.name for c in calls] == ["book_visit"] and "day" not in calls[0].arguments


async def test_a_strict_required_calls_arguments_follow_the_schema(
    model: LlamaCppModel,
) -> None:
    asked = "How much is a vaccination visit?"
    messages = [CLINIC, ChatMessage("user", asked)]
    # Asked for a question's call, the model writes a bare value ("arguments": 65) where the object
    # goes; strict, the arguments are written again under the schema: an object with what it requires.
    strict = [
        c async for c in model.stream(messages, [BOOK], max_tokens=60, tool_choice="book_visit", strict=True)
    ]
    calls = [c.tool_call for c in strict if c.tool_call]
    assert [c.name for c in calls] == ["book_visit"] and spoken(strict) == ""
    assert set(calls[0].arguments) >= {"pet", "day"}
    assert all(isinstance(v, str) for v in calls[0].arguments.values())


async def test_warm_up_caches_the_agent_prefix_for_its_first_turn(model: LlamaCppModel) -> None:
    system = ChatMessage("system", f"{CLINIC.content}\nSession {uuid.uuid4().hex}.")
    await model.warm_up([system], [BOOK])
    await ask(model, [system, ChatMessage("user", "Hello!")], [BOOK])
    stats = model.last_stats
    assert stats is not None and stats.cached_tokens > 100
    assert stats.prompt_tokens - stats.cached_tokens < 20, "only the caller's turn should be evaluated"


async def test_reading_ahead_leaves_only_the_last_words_of_a_turn_to_read(model: LlamaCppModel) -> None:
    system = ChatMessage("system", f"{CLINIC.content}\nSession {uuid.uuid4().hex}.")
    history = [system, ChatMessage("user", "Hello!"), ChatMessage("assistant", "Hi, how can I help?")]
    await model.warm_up([system], [BOOK])  # as the reply before would have left it
    warm = model._llm.n_tokens
    await model.read_ahead(history, [BOOK], "How much is a")
    read = model._llm.n_tokens
    assert read > warm + 10, "the exchange and the words heard were read"
    await ask(model, [*history, ChatMessage("user", "How much is a vaccination visit?")], [BOOK])
    stats = model.last_stats
    assert stats is not None and stats.cached_tokens >= read - 2, "the read-ahead was reused"
    assert stats.prompt_tokens - stats.cached_tokens < 12, "only the last words and the reply's opening"


async def test_a_read_ahead_of_another_conversation_is_skipped(model: LlamaCppModel) -> None:
    await ask(model, [CLINIC, ChatMessage("user", "Hello!")])
    held = model._llm.n_tokens
    other = ChatMessage("system", f"You answer questions about trains. Session {uuid.uuid4().hex}. " * 8)
    await model.read_ahead([other], None, "When does the")
    assert model._llm.n_tokens == held, "reading a whole other prompt would hold up the next reply"


async def test_after_a_call_the_tools_stay_in_the_prompt_and_only_the_allowed_may_be_called(
    model: LlamaCppModel,
) -> None:
    """The round after a tool's result may not hang up. The hang-up stays in the prompt (taking it out
    made the model read the prompt again from the tools on); it is just not callable."""
    system = ChatMessage("system", f"{CLINIC.content}\nSession {uuid.uuid4().hex}.")
    asked = [system, ChatMessage("user", "Please book a visit for my dog Rex on Thursday.")]
    chunks = await ask(model, asked, [BOOK, END])
    calls = tuple(c.tool_call for c in chunks if c.tool_call)
    assert [c.name for c in calls] == ["book_visit"]
    done = ChatMessage(
        "tool", '{"ok": true, "confirmation": "done"}', tool_call_id=calls[0].id, name="book_visit"
    )
    answered = [*asked, ChatMessage("assistant", "", tool_calls=calls), done]
    before = model.last_stats
    assert before is not None
    chunks = [
        c async for c in model.stream(answered, [BOOK, END], max_tokens=48, allowed_tools={"book_visit"})
    ]
    assert not [c for c in chunks if c.tool_call and c.tool_call.name == "end_call"]
    stats = model.last_stats
    assert stats is not None and stats.cached_tokens >= before.prompt_tokens - 2, (
        "the first round's prompt is reused"
    )

    # Nothing allowed: no call at all, even to a request.
    chunks = [c async for c in model.stream(asked, [BOOK, END], max_tokens=48, allowed_tools=set())]
    assert not [c for c in chunks if c.tool_call]
    assert chunks[-1].finish_reason != "tool_calls"


def test_a_call_is_refused_as_soon_as_its_name_cannot_be_an_allowed_one() -> None:
    opened = '<tool_call>\n{"name": "'
    assert not _calls_unallowed("Sure, one moment.", {"book_visit"})
    assert _calls_unallowed(opened, set()), "nothing may be called"
    assert not _calls_unallowed(opened, {"book_visit"}), "no name yet"
    assert not _calls_unallowed(opened + "book_v", {"book_visit"})
    assert _calls_unallowed(opened + "end_", {"book_visit"})
    assert not _calls_unallowed(opened + 'book_visit", "arguments": {', {"book_visit"})
    assert _calls_unallowed(opened + 'book"', {"book_visit"}), "a whole name that is not allowed"
    assert _calls_unallowed('{"name": "end_call"', {"book_visit"}), "a call written bare"
    assert not _calls_unallowed('{"name": "book_', {"book_visit"})


async def test_cancelling_the_consumer_stops_generation(model: LlamaCppModel) -> None:
    story = [ChatMessage("user", "Tell me a very long story about a dragon, in many sentences.")]
    seen = await cancel_after(model.stream(story, max_tokens=200), 3)
    deadline = time.monotonic() + 5
    while model.last_stats is None or model.last_stats.finish_reason != "cancelled":
        assert time.monotonic() < deadline, "generation did not stop"
        await asyncio.sleep(0.01)
    assert model.last_stats.completion_tokens <= len(seen) + 3
