"""A text document is read in the charset its upload declares (``text/plain; charset=windows-1252``), not
taken for UTF-8: its accents reach the agent's search as written. A charset nobody knows, or bytes that
are not valid in the declared one, are refused naming it, and nothing is stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import typer

from parley.platform.runtime import Platform
from tests.api.cli import run

CP1252 = "\u201cCaf\u00e9 cr\u00e8me\u201d costs 9 \u20ac on Sundays.".encode("cp1252")
"""Curly quotes and the euro sign are single bytes in windows-1252 that are not UTF-8."""


async def _agent(client: httpx.AsyncClient) -> dict[str, Any]:
    made = await client.post("/v1/agents", json={"name": "bistro", "config": {"system_prompt": "Be brief."}})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def _upload(client: httpx.AsyncClient, name: str, data: bytes, content_type: str) -> httpx.Response:
    return await client.post(
        "/v1/agents/bistro/documents",
        params={"name": name},
        content=data,
        headers={"Content-Type": content_type},
    )


async def _found(platform: Platform, agent_id: str, question: str) -> str:
    """The passage the agent's search finds for ``question``: the text a call is given."""
    index = await platform.documents.index_for(platform.default_org_id, agent_id)
    assert index is not None, "the document was stored"
    return index.search(question, 200)[0].text


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain; charset=windows-1252", CP1252),
        (
            'text/markdown; Charset="ISO-8859-1"',
            "Caf\u00e9 cr\u00e8me costs 9 euros on Sundays.".encode("latin-1"),
        ),
        ("text/plain; charset=utf-16", "Caf\u00e9 cr\u00e8me costs 9 euros on Sundays.".encode("utf-16")),
    ],
)
async def test_a_text_upload_is_read_in_its_declared_charset(
    client: httpx.AsyncClient, platform: Platform, content_type: str, data: bytes
) -> None:
    agent = await _agent(client)
    upload = await _upload(client, "menu.txt", data, content_type)
    assert upload.status_code == 201, upload.text
    assert upload.json()["size_bytes"] == len(data) and upload.json()["words"] == 7
    assert "Caf\u00e9 cr\u00e8me" in await _found(platform, agent["id"], "creme on sunday")


async def test_windows_1252_curly_quotes_and_euro_survive(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    agent = await _agent(client)
    assert (await _upload(client, "menu.txt", CP1252, "text/plain; charset=windows-1252")).status_code == 201
    found = await _found(platform, agent["id"], "cafe on sunday")
    assert "\u201cCaf\u00e9 cr\u00e8me\u201d costs 9 \u20ac" in found
    undeclared = await _upload(client, "again.txt", CP1252, "text/plain")
    assert undeclared.status_code == 415, "undeclared, the bytes are still not taken for UTF-8"
    assert "charset=" in undeclared.json()["detail"], "the refusal says how to declare the charset"


@pytest.mark.parametrize(
    ("content_type", "data", "status", "says"),
    [
        ("text/plain; charset=klingon-8", b"plain words", 415, "unknown charset 'klingon-8'"),
        ("text/plain; charset=base64", b"cGxhaW4gd29yZHM=", 415, "unknown charset 'base64'"),
        ("text/plain; charset=windows-1252", b"caf\xe9 \x81 cr\xe8me", 422, "'windows-1252'"),
        ("text/plain; charset=us-ascii", "caf\u00e9".encode(), 422, "byte 0xc3 at offset 3"),
    ],
)
async def test_an_unknown_charset_or_undecodable_text_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, content_type: str, data: bytes, status: int, says: str
) -> None:
    await _agent(client)
    refused = await _upload(client, "menu.txt", data, content_type)
    assert refused.status_code == status, refused.text
    assert says in refused.json()["detail"]
    assert (await client.get("/v1/agents/bistro/documents")).json() == []


# --- the command line ---------------------------------------------------------------------------------


def test_the_command_line_takes_the_files_charset(parley: typer.Typer, tmp_path: Path) -> None:
    assert run(parley, "agents", "create", "bistro").exit_code == 0
    menu = tmp_path / "menu.txt"
    menu.write_bytes(CP1252)
    refused = run(parley, "agents", "docs", "add", "bistro", str(menu))
    assert refused.exit_code == 2 and "not UTF-8" in refused.output
    unknown = run(parley, "agents", "docs", "add", "bistro", str(menu), "--charset", "klingon-8")
    assert unknown.exit_code == 2 and "unknown charset 'klingon-8'" in unknown.output
    added = run(parley, "agents", "docs", "add", "bistro", str(menu), "--charset", "windows-1252")
    assert added.exit_code == 0, added.output
    assert "added menu.txt" in added.stdout and "7 words" in added.stdout
