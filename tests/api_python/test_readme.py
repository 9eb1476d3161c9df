"""The README's Python agent, exactly as printed: served (as ``parley serve --agent dental:agent`` does),
talked to over the WebSocket, and its tool called with the caller's words."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley.commands.serve import load_served_agent
from parley.providers.llm.scripted import ScriptRule
from parley.stack import build_tools
from tests.server.conftest import ask_by_token, fast_engines, hang_up, serving

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_agent_code() -> str:
    text = README.read_text(encoding="utf-8")
    found = re.search(r"<!-- python-agent -->\n```python\n(.*?)```", text, re.DOTALL)
    assert found, "the README's Python agent block is marked <!-- python-agent -->"
    return found.group(1)


@pytest.fixture
def dental(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The README block saved as dental.py in the directory ``parley serve`` runs in."""
    (tmp_path / "dental.py").write_text(readme_agent_code(), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield tmp_path
    sys.modules.pop("dental", None)


def test_the_readme_agent_is_a_whole_agent_with_a_tool_in_15_lines() -> None:
    lines = readme_agent_code().strip().splitlines()
    assert len(lines) <= 15, f"{len(lines)} lines"


async def test_the_readme_agent_works_as_printed(dental: Path) -> None:
    config = load_served_agent("dental:agent")
    [spec] = build_tools(config).specs()
    assert spec.name == "book_cleaning" and spec.parameters["required"] == ["day", "name"]
    assert "ctx" not in spec.parameters["properties"]
    rules = [
        ScriptRule.after_tool("Booked", "Done: {result}"),
        ScriptRule.call("book", "book_cleaning", {"day": "Tuesday", "name": "Ana"}),
    ]
    async with serving(fast_engines([], rules), agents=[config]) as served:
        client = await served.client()
        started = await client.start()
        assert started["type"] == "session.started"
        greeting = await client.wait_for("agent.text", 10)
        assert greeting["text"].startswith("Hi, Smile Dental")
        mark = len(client.messages)
        await client.send({"type": "text", "text": "Can I book a cleaning on Tuesday? I'm Ana."})
        answer = await client.wait_for("agent.text", 10, since=mark)
        assert "Booked Ana for a cleaning on Tuesday at 10 am (call " in answer["text"]
        call_id = answer["text"].split("(call ")[1].split(")")[0]
        assert call_id == started["session_id"], "the tool's context names the call it runs in"
        await hang_up(client)


async def test_the_readme_agent_takes_a_token_call_with_its_tools(dental: Path, tmp_path: Path) -> None:
    """A session token (as a phone number does) names the Python agent by its record, which the server
    writes when it starts; the call runs the agent in the file, whose tools are code no record holds."""
    config = load_served_agent("dental:agent")
    rules = [
        ScriptRule.after_tool("Booked", "Done: {result}"),
        ScriptRule.call("book", "book_cleaning", {"day": "Tuesday", "name": "Ana"}),
    ]
    key = "pk_readme-python-agent"
    served_with = {"platform": True, "data_dir": tmp_path / "data", "api_key": key}
    async with serving(fast_engines([], rules), agents=[config], **served_with) as served:
        async with served.api(key) as http:
            record = (await http.get("/v1/agents/smile-dental")).json()
            assert record["source"] == "file", "on record before anyone called it"
            minted = await http.post("/v1/agents/smile-dental/sessions")
            assert minted.status_code == 201, minted.text
        asked = "Can I book a cleaning on Tuesday? I'm Ana."
        client, answer = await ask_by_token(served, minted.json()["token"], asked)
        assert "Booked Ana for a cleaning on Tuesday" in answer["text"]
        await hang_up(client)
