"""A call with documents and prompt variables: what the model is asked, and what the caller hears."""

from __future__ import annotations

from parley.engine.events import EventType
from parley.engine.knowledge import KnowledgeIndex
from parley.engine.session import SessionOptions
from parley.engine.variables import CallVariables
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.simulate import Conversation, UserTurn
from tests.engine.harness import agent, speech, stack

HOURS = "## Opening hours\nWe open Monday to Saturday, 9 to 5. We are closed on Sundays."


async def test_the_callers_question_brings_its_passage_and_their_name_is_used() -> None:
    engines = stack(
        ["Are you open on Sunday?", "Thanks, bye for now."],
        [ScriptRule.say("Sunday", "No, we are closed on Sundays."), ScriptRule.say("bye", "Goodbye!")],
    )
    config = agent(
        system_prompt="You answer for Bright Smile. The caller is {{caller.name}}, plan {{metadata.plan}}.",
        first_message="Hello {{ caller.name }}!",
    )
    options = SessionOptions(
        interim_interval_s=None,
        knowledge=KnowledgeIndex.from_documents([("hours.md", HOURS)]),
        variables=CallVariables(caller_name="Ana", metadata={"plan": "gold"}),
    )
    conversation = Conversation(config, engines, options)
    result = await conversation.run([UserTurn(speech(1.0)), UserTurn(speech(1.0))], answer_timeout_s=10)

    said = [e.data["text"] for e in result.events if e.type is EventType.AGENT_TEXT]
    assert said[0] == "Hello Ana!"
    assert isinstance(engines.llm, ScriptedModel)
    first, second = engines.llm.calls[0], engines.llm.calls[-1]
    assert first[0].content.startswith("You answer for Bright Smile. The caller is Ana, plan gold.")
    assert [m.role for m in first[-2:]] == ["system", "user"]
    assert "closed on Sundays" in first[-2].content and first[-1].content == "Are you open on Sunday?"
    # The next turn's prefix is what the model saw before, without the old notes (cache-friendly).
    assert second[-1].content == "Thanks, bye for now."
    assert not any("closed on Sundays" in m.content for m in second if m.role == "system")
    assert second[0] == first[0]
