import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from parley import Agent, CallContext
from parley.engine.agent import AgentConfig
from parley.engine.events import Event, EventType
from parley.engine.options import EngineStack, SessionOptions
from parley.engine.tools import Tool, ToolOutsideCall, ToolRegistry, ToolResult, ToolScope
from parley.engine.transport import CallControls
from parley.providers.llm.base import ChatMessage, LanguageModel, LLMChunk, ToolCall, ToolSpec, Usage
from parley.providers.llm.scripted import ScriptRule
from parley.simulate import Conversation, UserTurn
from parley.stack import build_tools
from tests.engine.harness import agent as harness_agent
from tests.engine.harness import converse, speech, stack

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}


async def weather(args: dict[str, Any]) -> dict[str, Any]:
    return {"city": args["city"], "forecast": "sunny"}


async def slow(_: dict[str, Any]) -> None:
    await asyncio.sleep(5)


async def broken(_: dict[str, Any]) -> None:
    raise RuntimeError("backend down")


@pytest.fixture
def registry() -> ToolRegistry:
    tools = ToolRegistry()
    tools.register(Tool("weather", "Weather by city", SCHEMA, weather))
    tools.register(Tool("slow", "Never answers in time", {"type": "object"}, slow, timeout_s=0.05))
    tools.register(Tool("broken", "Always fails", {"type": "object"}, broken))
    return tools


async def test_valid_call_returns_json_result(registry: ToolRegistry) -> None:
    outcome = await registry.execute(ToolCall("1", "weather", {"city": "Paris"}))
    assert outcome.ok
    assert '"forecast": "sunny"' in outcome.content


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (ToolCall("1", "weather", {"town": "Paris"}), "invalid arguments"),
        (ToolCall("2", "nope", {}), "unknown tool 'nope'. Available tools: broken, slow, weather"),
        (ToolCall("3", "slow", {}), "timed out"),
        (ToolCall("4", "broken", {}), "backend down"),
    ],
)
async def test_failures_become_messages_for_the_model(
    registry: ToolRegistry, call: ToolCall, expected: str
) -> None:
    outcome = await registry.execute(call)
    assert not outcome.ok
    assert expected in outcome.content


def test_bad_schema_is_rejected_at_registration() -> None:
    with pytest.raises(Exception, match="not valid"):
        ToolRegistry().register(Tool("bad", "", {"type": "no-such-type"}, weather))


# --- what a tool may ask of the call: through its result or its context, never by its name -----------


async def test_a_result_can_ask_to_end_the_call() -> None:
    async def goodbye(_: dict[str, Any]) -> ToolResult:
        return ToolResult({"bye": True}, end_call=True)

    tools = ToolRegistry()
    tools.register(Tool("wrap_up", "", {"type": "object"}, goodbye))
    outcome = await tools.execute(ToolCall("1", "wrap_up", {}))
    assert outcome.ok and outcome.end_call and outcome.content == '{"bye": true}'


async def test_the_context_asks_to_end_the_call_and_speaks_while_the_tool_works() -> None:
    context = CallContext(call_id="c1")
    said: list[str] = []

    async def check_out(_: dict[str, Any]) -> str:
        await context.say("Let me close your file.")
        context.end_call()
        return "closed"

    tools = ToolRegistry()
    tools.register(Tool("check_out", "", {"type": "object"}, check_out))
    outcome = await tools.execute(ToolCall("1", "check_out", {}), ToolScope(say=said.append))
    assert outcome.ok and outcome.end_call and said == ["Let me close your file."]
    plain = await tools.execute(ToolCall("2", "weather_free", {}))
    assert not plain.end_call


async def test_the_context_outside_a_tool_call_is_a_clear_error() -> None:
    with pytest.raises(ToolOutsideCall, match="only while"):
        await CallContext().say("hello")


async def test_a_failing_tool_does_not_end_the_call_even_if_it_asked_to() -> None:
    context = CallContext()

    async def half_done(_: dict[str, Any]) -> None:
        context.end_call()
        raise RuntimeError("the booking system is down")

    tools = ToolRegistry()
    tools.register(Tool("book", "", {"type": "object"}, half_done))
    outcome = await tools.execute(ToolCall("1", "book", {}))
    assert not outcome.ok and not outcome.end_call and "booking system is down" in outcome.content


# --- the built-in send_dtmf ---------------------------------------------------------------------------


def dtmf_agent() -> AgentConfig:
    return AgentConfig.model_validate({"tools": [{"name": "send_dtmf"}]})


async def test_send_dtmf_hands_the_digits_to_the_line() -> None:
    controls = CallControls()
    pressed: list[str] = []

    async def press(digits: str) -> None:
        pressed.append(digits)

    controls.dtmf_handler = press
    tools = build_tools(dtmf_agent(), controls)
    tool = tools.get("send_dtmf")
    assert tool is not None and tool.side_effect and not tool.filler
    outcome = await tools.execute(ToolCall("1", "send_dtmf", {"digits": "204#"}))
    assert outcome.ok and pressed == ["204#"]
    bad = await tools.execute(ToolCall("2", "send_dtmf", {"digits": "12; rm"}))
    assert not bad.ok and "invalid arguments" in bad.content and pressed == ["204#"]


async def test_send_dtmf_on_a_line_without_a_keypad_is_an_error_the_model_can_say() -> None:
    tools = build_tools(dtmf_agent(), CallControls())  # a browser call
    outcome = await tools.execute(ToolCall("1", "send_dtmf", {"digits": "1"}))
    assert not outcome.ok
    assert "cannot send keypad tones" in outcome.content and "tell the caller" in outcome.content


# --- in a live session: parallel calls, the filler, ending the call -----------------------------------


class TwoLookups:
    """A model that asks for two tools in one turn, then reads both results back."""

    name = "two-lookups"

    def __init__(self) -> None:
        self.requests: list[list[ChatMessage]] = []

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        self.requests.append(list(messages))
        results = [m.content for m in messages if m.role == "tool"]
        if results:
            yield LLMChunk(text=" and ".join(json.loads(r) for r in results) + ".")
        else:
            yield LLMChunk(tool_call=ToolCall("a", "opening_hours", {"branch": "north"}))
            yield LLMChunk(tool_call=ToolCall("b", "opening_hours", {"branch": "south"}))
        yield LLMChunk(usage=Usage(1, 1), finish_reason="stop")

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        return None


def engines(llm: LanguageModel, line: str) -> EngineStack:
    built = stack([line], [])
    return dataclasses.replace(built, llm=llm)


async def test_all_calls_of_one_model_turn_run_at_once_and_answer_in_order() -> None:
    config = Agent("branches", endpointing=harness_agent().endpointing)
    both_running = asyncio.Event()
    running: set[str] = set()

    @config.tool
    async def opening_hours(branch: str) -> str:
        """Opening hours of a branch."""
        running.add(branch)
        if len(running) == 2:
            both_running.set()
        await both_running.wait()  # one at a time, this would never return: the first times out
        return f"{branch} opens at {'8' if branch == 'north' else '10'}"

    llm = TwoLookups()
    _, result = await converse(config.config, engines(llm, "When do you open?"), [UserTurn(speech(1.0))])
    outcomes = [e.data for e in result.events if e.type is EventType.TOOL_RESULT]
    assert {o["call_id"] for o in outcomes} == {"a", "b"}
    assert all(o["ok"] for o in outcomes), outcomes
    tool_messages = [m for m in llm.requests[-1] if m.role == "tool"]
    assert [m.tool_call_id for m in tool_messages] == ["a", "b"], "results go back in the order asked"
    assert result.turns[0].agent_text == "north opens at 8 and south opens at 10."


async def test_a_slow_tool_gets_the_filler_and_a_fast_one_does_not() -> None:
    config = Agent("lookup", endpointing=harness_agent().endpointing, tool_filler="Hold on, I am looking.")
    filler_heard = asyncio.Event()

    @config.tool
    async def slow_lookup(order: str) -> str:
        """Look an order up."""
        await filler_heard.wait()  # the backend answers only after the caller heard the filler
        return "shipped"

    @config.tool
    async def fast_lookup(order: str) -> str:
        """Look an order up, quickly."""
        return "shipped"

    rules = [
        ScriptRule.after_tool("shipped", "It has shipped."),
        ScriptRule.call("slow", "slow_lookup", {"order": "42"}),
        ScriptRule.call("fast", "fast_lookup", {"order": "42"}),
    ]
    conversation = Conversation(
        config.config,
        stack(["Where is order 42, slow?", "And fast?"], rules),
        SessionOptions(interim_interval_s=None),
    )

    def on_event(event: Event) -> None:
        if event.type is EventType.AGENT_AUDIO_PLAYED and "Hold on" in event.data["heard_text"]:
            filler_heard.set()

    conversation.timeline.subscribe(on_event)
    result = await conversation.run([UserTurn(speech(1.0)), UserTurn(speech(1.0))], answer_timeout_s=10)
    slow, fast = result.turns
    assert slow.agent_text == "Hold on, I am looking. It has shipped."
    assert fast.agent_text == "It has shipped.", "a quick answer needs no filler"


async def test_ending_the_call_is_a_tool_result_not_a_tool_name() -> None:
    config = Agent(
        "shop",
        endpointing=harness_agent().endpointing,
        tools=[{"name": "end_call", "kind": "static", "result": "noted"}],  # a lookalike: just data
    )

    @config.tool
    async def cancel_order(order: str, ctx: CallContext) -> str:
        """Cancel an order; the call is over after that."""
        ctx.end_call()
        return f"order {order} cancelled"

    rules = [
        ScriptRule.after_tool("noted", "Noted, anything else?"),
        ScriptRule.after_tool("cancelled", "Done, your order is cancelled. Goodbye!"),
        ScriptRule.call("goodbye", "end_call", {}),
        ScriptRule.call("cancel", "cancel_order", {"order": "7"}),
    ]
    _, kept = await converse(config.config, stack(["Okay goodbye."], rules), [UserTurn(speech(0.8))])
    assert [e.data["reason"] for e in kept.events if e.type is EventType.SESSION_ENDED] == [
        "simulation_done"
    ], "a tool that happens to be called end_call does not hang up"

    conv, ended = await converse(config.config, stack(["Cancel order 7."], rules), [UserTurn(speech(0.8))])
    assert [e.data["reason"] for e in ended.events if e.type is EventType.SESSION_ENDED] == [
        "agent_ended_call"
    ]
    assert ended.turns[0].agent_text == "Done, your order is cancelled. Goodbye!"
    last_audio = conv.speaker.last_audio_end()
    end = next(e for e in ended.events if e.type is EventType.SESSION_ENDED)
    assert last_audio is not None and end.t >= last_audio - 0.005, "hung up before the goodbye was heard"
