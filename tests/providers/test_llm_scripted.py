"""The scripted model must behave like a real one where the engine can tell: streaming, tools, cancel."""

from __future__ import annotations

import asyncio
import re

from parley.providers.llm.base import ChatMessage, LanguageModel, LLMChunk, ToolSpec
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from tests.helpers.llm_streams import cancel_after

WEATHER = ToolSpec(
    "get_weather", "Look up the weather", {"type": "object", "properties": {"city": {"type": "string"}}}
)


def weather_model(token_delay: float = 0.0) -> ScriptedModel:
    return ScriptedModel(
        [
            ScriptRule.call(re.compile(r"weather in (?P<city>\w+)", re.I), "get_weather", {"city": "Paris"}),
            ScriptRule.after_tool("sunny", "It's sunny in Paris right now."),
            ScriptRule.say(re.compile(r"my name is (?P<who>\w+)", re.I), "Nice to meet you, {who}!"),
            ScriptRule.say("hello", "Hi there! How can I help?"),
        ],
        token_delay=token_delay,
    )


async def collect(model: LanguageModel, messages: list[ChatMessage], **kw: object) -> list[LLMChunk]:
    return [chunk async for chunk in model.stream(messages, **kw)]  # type: ignore[arg-type]


async def test_reply_streams_word_by_word_with_usage() -> None:
    chunks = await collect(
        weather_model(), [ChatMessage("system", "Be nice."), ChatMessage("user", "Hello!")]
    )
    texts = [c.text for c in chunks if c.text]
    assert texts == ["Hi ", "there! ", "How ", "can ", "I ", "help?"]
    assert chunks[-1].usage is not None and chunks[-1].usage.output_tokens == 6
    assert chunks[-1].usage.input_tokens == 3
    assert chunks[-1].finish_reason == "stop"


async def test_full_tool_round_trip() -> None:
    model = weather_model()
    history = [ChatMessage("user", "What's the weather in Paris?")]
    first = await collect(model, history, tools=[WEATHER])
    calls = [c.tool_call for c in first if c.tool_call]
    assert len(calls) == 1 and calls[0].name == "get_weather" and calls[0].arguments == {"city": "Paris"}
    assert first[-1].finish_reason == "tool_calls"
    assert not any(c.text for c in first)

    history += [
        ChatMessage("assistant", tool_calls=(calls[0],)),
        ChatMessage("tool", '{"sky": "sunny", "temp_c": 21}', tool_call_id=calls[0].id),
    ]
    second = await collect(model, history, tools=[WEATHER])
    assert "".join(c.text for c in second) == "It's sunny in Paris right now."
    assert model.calls[1][-1].tool_call_id == calls[0].id


async def test_tool_rule_needs_the_tool_to_be_offered() -> None:
    chunks = await collect(weather_model(), [ChatMessage("user", "weather in Paris?")])
    assert not any(c.tool_call for c in chunks)
    assert "".join(c.text for c in chunks) == "Sorry, I don't know about that."


async def test_named_groups_fill_the_reply() -> None:
    chunks = await collect(weather_model(), [ChatMessage("user", "Hi, my name is Ada.")])
    assert "".join(c.text for c in chunks) == "Nice to meet you, Ada!"


async def test_max_tokens_cuts_the_reply() -> None:
    chunks = await collect(weather_model(), [ChatMessage("user", "hello")], max_tokens=2)
    assert "".join(c.text for c in chunks) == "Hi there! "
    assert chunks[-1].finish_reason == "length"


async def test_cancelling_the_consumer_stops_within_one_token() -> None:
    model = ScriptedModel([ScriptRule.say("story", " ".join(["word"] * 50))], token_delay=0.02)
    seen = await cancel_after(model.stream([ChatMessage("user", "tell me a story")]), 3)
    produced = model.tokens_streamed
    await asyncio.sleep(0.1)
    assert model.tokens_streamed == produced <= len(seen) + 1
    assert model.count_tokens("one two  three") == 3
