"""A JSON body nested a thousand levels deep (2 KB: ``[`` a thousand times, then ``]`` as many) is valid
JSON, but Python's parser recurses once per level and ran out of stack inside the route: a 400 "There was
an error parsing the body" that names nothing, where ``docs/security.md`` promises a 422 naming the body on
every route. It is refused before any route parses it, with the shape of the API's other body errors;
nesting as deep as an agent with a JSON schema needs still passes. The app is the server's own
(``create_platform_app``: middleware, error handlers and routes).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.config import Settings
from tests.api.server_app import server_app_client

KEY = "pk_nested-json-body-key"
DEEP = b"[" * 1000 + b"]" * 1000
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(_env_file=None, data_dir=tmp_path, database_url=db_url, api_key=KEY)
    async with server_app_client(settings, KEY) as http:
        yield http


def assert_names_the_body(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body"] and error["type"] == "json_too_deep"
    assert "nest" in error["msg"] and "input" not in error


@pytest.mark.parametrize(
    ("body", "headers"),
    [(DEEP, JSON), (DEEP, {}), (b'{"a":' * 1000 + b"1" + b"}" * 1000, JSON)],
    ids=["arrays", "no-content-type", "objects"],
)
async def test_a_deeply_nested_body_is_422_naming_the_body(
    api: httpx.AsyncClient, body: bytes, headers: dict[str, str]
) -> None:
    assert_names_the_body(await api.post("/v1/agents", content=body, headers=headers))


async def test_the_public_lead_endpoint_answers_the_same_without_a_key(api: httpx.AsyncClient) -> None:
    anonymous = {"Authorization": ""}
    sent = await api.post("/v1/public/leads/default", content=DEEP, headers=JSON | anonymous)
    assert_names_the_body(sent)


async def test_brackets_inside_strings_and_an_agent_with_a_deep_schema_pass(api: httpx.AsyncClient) -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(12):
        schema = {"type": "object", "properties": {"x": schema}}
    brackets = "[" * 1000 + "{" * 1000  # text, not nesting
    tool = {"name": "deep", "kind": "static", "result": "ok", "parameters": schema, "description": brackets}
    config = {"tools": [tool]}
    made = await api.post("/v1/agents", json={"name": "deep-schema", "config": config})
    assert made.status_code == 201, made.text
