"""The README's YAML agent, exactly as printed: it loads, is served by ``parley serve --agent``, and on
the real embedded stack answers from its fact and admits what it does not know."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from parley.commands.serve import load_served_agent
from parley.engine.events import EventType
from parley.simulate import Conversation
from parley.stack import prepare_stack

README = Path(__file__).resolve().parents[2] / "README.md"


async def reply_done(conversation: Conversation, since: int) -> None:
    """Until a reply that started after event ``since`` is done (up to 30 s; one takes about a second)."""
    for _ in range(600):
        if any(e.type is EventType.AGENT_REPLY_DONE for e in conversation.timeline.events[since:]):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("no reply within 30 s")


def readme_yaml(tmp_path: Path) -> Path:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"An agent is a YAML file.*?```yaml\n(.*?)```", text, re.DOTALL)
    assert found, "the README's YAML agent block follows 'An agent is a YAML file'"
    path = tmp_path / "dental.yaml"
    path.write_text(found.group(1), encoding="utf-8")
    return path


def test_the_readme_yaml_agent_loads_as_printed(tmp_path: Path) -> None:
    agent = load_served_agent(str(readme_yaml(tmp_path)))
    assert agent.name == "dental-front-desk" and agent.grounded and agent.knowledge
    assert [t.name for t in agent.tools] == ["end_call"]


@pytest.mark.models
async def test_the_readme_yaml_agent_answers_on_the_embedded_stack(tmp_path: Path) -> None:
    agent = load_served_agent(str(readme_yaml(tmp_path)))
    conversation = Conversation(agent, await prepare_stack(agent))
    session = conversation.session
    runner = asyncio.create_task(session.run())
    replies: list[str] = []
    try:
        await reply_done(conversation, 0)  # the greeting first
        for question in ("What are your opening hours?", "Do you have a swimming pool?"):
            mark = len(conversation.timeline.events)
            session.send_text(question)
            await reply_done(conversation, mark)
            events = conversation.timeline.events[mark:]
            replies.append(" ".join(e.data["text"] for e in events if e.type is EventType.AGENT_TEXT))
    finally:
        session.end("test_done")
        await runner
    assert "monday" in replies[0].lower() or "9" in replies[0], replies
    assert replies[1] == agent.unknown_answer, replies
