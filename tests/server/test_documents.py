"""``POST /v1/agents/{id}/documents`` refuses bad input the way every route does (docs/security.md): a
422 naming the field, never a 500 and never the input echoed; names are file names, text has no NUL."""

from __future__ import annotations

import httpx
import pytest

from tests.api.conftest import client, platform  # noqa: F401  (fixtures)
from tests.store.fixtures import *  # noqa: F403  (databases of both dialects)

BASE = "/v1/agents/desk/documents"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api(client: httpx.AsyncClient) -> httpx.AsyncClient:  # noqa: F811  (the imported fixture)
    made = await client.post("/v1/agents", json={"name": "desk", "config": {"system_prompt": "Be brief."}})
    assert made.status_code == 201, made.text
    return client


async def _stored(api: httpx.AsyncClient) -> list[str]:
    return [d["name"] for d in (await api.get(BASE)).json()]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"name":', ["body"]),  # not JSON at all
        (b"\xff\xfe{}", ["body"]),  # not UTF-8
        (b'{"name":"x.md","text":"a\\ud800b"}', ["body"]),  # a lone surrogate
        (
            b'{"name":"x.md","text":{"api_key":"sk-live-SECRET"}}',
            ["body", "text"],
        ),  # a key in the wrong field
        (b'{"name":"x.md","text":"sk-live-SECRET","secret":"sk-live-SECRET"}', ["body", "secret"]),
    ],
)
async def test_a_bad_json_body_is_a_422_that_names_the_field_and_never_echoes_it(
    api: httpx.AsyncClient, body: bytes, loc: list[str]
) -> None:
    response = await api.post(BASE, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert error["loc"] == loc and error["msg"]
    assert "input" not in error, "validation errors name fields, never inputs"
    assert "SECRET" not in response.text and "\\ud800" not in response.text
    assert await _stored(api) == []


@pytest.mark.parametrize(
    "name", ["..", ".", "a\r\nContent-Type: x", "line\nbreak.md", "bell\x07.md", "del\x7f.md", "c1\x85.md"]
)
async def test_a_document_name_is_a_plain_file_name(api: httpx.AsyncClient, name: str) -> None:
    as_json = await api.post(BASE, json={"name": name, "text": "We open at nine."})
    assert as_json.status_code == 422, as_json.text
    assert [e["loc"] for e in as_json.json()["detail"]] == [["body", "name"]]
    raw = await api.post(
        BASE, params={"name": name}, content=b"We open at nine.", headers={"Content-Type": "text/plain"}
    )
    assert raw.status_code == 422, raw.text
    assert raw.json()["detail"].startswith("`name` (the file name")
    assert await _stored(api) == []


async def test_names_with_dots_and_spaces_are_still_file_names(api: httpx.AsyncClient) -> None:
    for name in ("...", ".hidden.md", "opening hours v2.md", "prix-été.txt"):
        made = await api.post(BASE, json={"name": name, "text": "We open at nine."})
        assert made.status_code == 201, made.text
    assert sorted(await _stored(api)) == sorted(["...", ".hidden.md", "opening hours v2.md", "prix-été.txt"])


async def test_a_nul_in_json_text_is_refused_not_silently_dropped(api: httpx.AsyncClient) -> None:
    response = await api.post(BASE, json={"name": "hours.md", "text": "We open\x00 at nine."})
    assert response.status_code == 422, response.text
    (error,) = response.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "text"], "nul_character")
    assert await _stored(api) == []
