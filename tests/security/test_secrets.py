"""Threat: provider keys leak through agent configurations or the API.

A key is never an agent option: it is an organization secret, encrypted at rest, shown by name only,
and referenced by agents as ``api_key_secret``. It reaches only the operator's provider endpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.platform.runtime import Platform
from parley.providers.llm.base import ChatMessage
from parley.stack import ProviderError, build_stack
from tests.api.conftest import client, platform  # noqa: F401  (fixtures)
from tests.helpers.llm_openai_stub import StubResponse, StubServer, sse

KEY = "sk-test-0123456789abcdef"


async def test_a_key_in_agent_options_is_refused(client: httpx.AsyncClient) -> None:  # noqa: F811
    made = await client.post(
        "/v1/agents",
        json={"config": {"llm": {"provider": "openai", "options": {"model": "gpt-4o-mini", "api_key": KEY}}}},
    )
    assert made.status_code == 422 and "api_key" in made.text
    assert KEY not in made.text, "the refusal does not echo the key"


async def test_secrets_are_write_only_and_encrypted_at_rest(
    client: httpx.AsyncClient,  # noqa: F811
    platform: Platform,  # noqa: F811
    tmp_path: Path,
) -> None:
    put = await client.put("/v1/secrets/openai-key", json={"value": KEY})
    assert put.status_code == 200 and KEY not in put.text
    listed = await client.get("/v1/secrets")
    assert [s["name"] for s in listed.json()] == ["openai-key"] and KEY not in listed.text
    agent = await client.post(
        "/v1/agents",
        json={
            "config": {
                "llm": {
                    "provider": "openai",
                    "options": {"model": "gpt-4o-mini", "api_key_secret": "openai-key"},
                }
            }
        },
    )
    assert agent.status_code == 201 and KEY not in agent.text
    assert KEY not in (await client.get("/v1/agents")).text
    database = tmp_path / "parley.db"
    if database.is_file():  # SQLite: the key's bytes are nowhere in the file
        assert KEY.encode() not in database.read_bytes()
    assert await platform.secrets.resolve(platform.default_org_id, ["openai-key"]) == {"openai-key": KEY}
    assert (await client.delete("/v1/secrets/openai-key")).status_code == 204
    assert (await client.get("/v1/secrets")).json() == []


async def test_a_secret_is_stored_without_the_line_break_a_paste_leaves(
    client: httpx.AsyncClient,  # noqa: F811
    platform: Platform,  # noqa: F811
) -> None:
    """A value with a newline would be refused by the HTTP client of a webhook tool, which quotes it."""
    assert (await client.put("/v1/secrets/token", json={"value": f"  {KEY}\n"})).status_code == 200
    assert await platform.secrets.resolve(platform.default_org_id, ["token"]) == {"token": KEY}
    for bad in (f"{KEY[:5]}\n{KEY[5:]}", f"{KEY}\x1b", " \n "):
        refused = await client.put("/v1/secrets/token", json={"value": bad})
        assert refused.status_code == 422 and KEY[5:] not in refused.text
    assert await platform.secrets.resolve(platform.default_org_id, ["token"]) == {"token": KEY}


@pytest.fixture
def openai_endpoint() -> Iterator[None]:
    """Settings read from the environment this test changes, and forgotten after it."""
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_the_secret_goes_to_the_operators_endpoint_only(
    monkeypatch: pytest.MonkeyPatch, openai_endpoint: None
) -> None:
    reply = sse({"choices": [{"delta": {"content": "Hi."}, "finish_reason": "stop"}]}, "[DONE]")
    async with StubServer([StubResponse(chunks=reply)]) as server:
        monkeypatch.setenv("PARLEY_OPENAI_BASE_URL", server.url)
        get_settings.cache_clear()
        agent = AgentConfig.model_validate(
            {"llm": {"provider": "openai", "options": {"model": "gpt-4o-mini", "api_key_secret": "k"}}}
        )
        with pytest.raises(ProviderError, match="no secret named 'k'"):
            build_stack(agent, {})
        stack = build_stack(agent, {"k": KEY})
        async for _ in stack.llm.stream([ChatMessage("user", "hello")], temperature=0, max_tokens=8):
            pass
    assert server.headers and server.headers[-1]["authorization"] == f"Bearer {KEY}"
