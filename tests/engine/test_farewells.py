"""When the caller closes the call and the agent's whole reply is a goodbye, the call ends: a small
model often says "Have a nice day!" without calling its closing tool, and the line stays open."""

from __future__ import annotations

import pytest

from parley.engine.events import EventType
from parley.engine.farewells import closes_call, is_farewell
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolSpec
from parley.simulate import UserTurn
from tests.engine.harness import converse, speech
from tests.engine.test_tool_rounds import Scripted, engines, shop


@pytest.mark.parametrize(
    ("caller", "closing"),
    [
        ("Cool, thank you, that's all I needed.", True),
        ("Alright, thanks for your help. Bye.", True),
        ("No, I'm all set, thanks.", True),
        ("Nothing else, thanks.", True),
        ("Is that all I need to bring?", False),
        ("Thanks.", False),
        ("Okay, book me for Tuesday.", False),
    ],
)
def test_what_closes_a_call(caller: str, closing: bool) -> None:
    assert closes_call(caller) is closing


@pytest.mark.parametrize(
    ("reply", "farewell"),
    [
        ("You're welcome! Have a nice day!", True),
        ("Goodbye!", True),
        ("Thank you for calling Peak Heating. Have a great day!", True),
        ("You're welcome! Is there anything else I can help with?", False),
        ("Bye. We close at 5 pm on Fridays.", False),
        ("", False),
    ],
)
def test_what_is_only_a_farewell(reply: str, farewell: bool) -> None:
    assert is_farewell(reply) is farewell


def _says(text: str) -> Scripted:
    def script(messages: list[ChatMessage], tools: list[ToolSpec] | None) -> list[LLMChunk]:
        return [LLMChunk(text=text)]

    return Scripted(script)


async def _ends(reply: str, caller: str) -> tuple[list[str], list[str], str]:
    agent, _ = shop()
    _, result = await converse(agent.config, engines(_says(reply), caller), [UserTurn(speech(1.0))])
    called = [e.data["tool"] for e in result.events if e.type is EventType.TOOL_CALL]
    reasons = [e.data["reason"] for e in result.events if e.type is EventType.SESSION_ENDED]
    return called, reasons, result.turns[0].agent_text


async def test_a_goodbye_to_a_caller_who_closed_hangs_up_after_it_is_heard() -> None:
    called, reasons, said = await _ends("You're welcome! Have a nice day!", "Great, that's all I needed.")
    assert called == ["end_call"]
    assert reasons == ["agent_ended_call"]
    assert said == "You're welcome! Have a nice day!"


@pytest.mark.parametrize(
    ("reply", "caller"),
    [
        ("You're welcome! Anything else I can do?", "Great, that's all I needed."),
        ("Have a nice day!", "What time do you close?"),
    ],
)
async def test_the_line_stays_open_unless_both_sides_said_goodbye(reply: str, caller: str) -> None:
    called, reasons, _ = await _ends(reply, caller)
    assert called == [] and reasons == ["simulation_done"]
