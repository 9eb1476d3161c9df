"""A tool handler's ``ctx.metadata`` is the call's metadata as the integrator gave it: the caller's name
(``caller_name`` of ``POST /v1/agents/{id}/sessions``) is not mixed into it, but is ``ctx.caller_name``.
Served as ``parley serve --agent`` does, with the store, and called over the WebSocket with a token."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from parley.agent_api import Agent, CallContext
from parley.providers.llm.scripted import ScriptRule
from tests.server.conftest import ask_by_token, fast_engines, hang_up, serving

KEY = "pk_ctx-metadata-key"


def front_desk(seen: list[tuple[str | None, dict[str, Any]]]) -> Agent:
    """An agent whose tool keeps what its context said of the call."""
    agent = Agent(name="front-desk", instructions="Look orders up.", first_message="Hi!")

    @agent.tool
    async def order_status(ctx: CallContext) -> str:
        """Look up the caller's order."""
        seen.append((ctx.caller_name, dict(ctx.metadata)))
        return f"order {ctx.metadata.get('order')} ships today"

    return agent


async def _tool_context(tmp_path: Path, session: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Start a call with ``session`` as the body of ``POST /v1/agents/front-desk/sessions``, ask for the
    order, and return what the tool's context held."""
    seen: list[tuple[str | None, dict[str, Any]]] = []
    rules = [
        ScriptRule.after_tool("ships", "Your {result}."),
        ScriptRule.call("order", "order_status", {}),
    ]
    served_with = {"platform": True, "data_dir": tmp_path / "data", "api_key": KEY}
    config = front_desk(seen).config
    async with serving(fast_engines([], rules), agents=[config], **served_with) as served:
        async with served.api(KEY) as http:
            minted = await http.post("/v1/agents/front-desk/sessions", json=session)
            assert minted.status_code == 201, minted.text
        client, answer = await ask_by_token(served, minted.json()["token"], "Where is my order?")
        assert "ships today" in answer["text"], answer
        await hang_up(client)
    assert len(seen) == 1, seen
    return seen[0]


async def test_the_callers_name_is_not_mixed_into_the_tools_metadata(tmp_path: Path) -> None:
    metadata = {"order": "A17", "plan": "gold"}
    caller_name, seen = await _tool_context(tmp_path, {"caller_name": "Ana", "metadata": metadata})
    assert seen == metadata, "ctx.metadata is what the integrator sent, nothing added"
    assert caller_name == "Ana", "the name is ctx.caller_name"


async def test_a_call_without_a_name_has_none(tmp_path: Path) -> None:
    caller_name, seen = await _tool_context(tmp_path, {"metadata": {"order": "B2"}})
    assert (caller_name, seen) == (None, {"order": "B2"})
