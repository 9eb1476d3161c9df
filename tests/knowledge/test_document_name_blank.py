"""A document's name is shown in listings and used to remove it: a blank one (spaces, or characters that
show as nothing) is refused, naming the field, by the API and by ``parley agents docs add --name``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import typer

from tests.api.cli import run

BLANKS = [" ", "   ", "\u3000", "\u00a0", "\u200b", " \u200b "]
"""Spaces, an ideographic and a no-break space, a zero-width space (a format character), and a mix."""


async def _agent(client: httpx.AsyncClient) -> str:
    made = await client.post("/v1/agents", json={"name": "dentist", "config": {"system_prompt": "Be brief."}})
    assert made.status_code == 201, made.text
    return f"/v1/agents/{made.json()['id']}/documents"


@pytest.mark.parametrize("name", BLANKS)
async def test_a_raw_upload_with_a_blank_name_is_refused(client: httpx.AsyncClient, name: str) -> None:
    documents = await _agent(client)
    refused = await client.post(
        documents, params={"name": name}, content=b"We open at nine.", headers={"Content-Type": "text/plain"}
    )
    assert refused.status_code == 422, refused.text
    assert "`name`" in refused.json()["detail"] and "not blank" in refused.json()["detail"]
    assert (await client.get(documents)).json() == []


@pytest.mark.parametrize("name", BLANKS)
async def test_a_text_document_with_a_blank_name_is_refused(client: httpx.AsyncClient, name: str) -> None:
    documents = await _agent(client)
    refused = await client.post(documents, json={"name": name, "text": "We open at nine."})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["detail"]
    assert error["loc"] == ["body", "name"] and "blank" in error["msg"]
    assert (await client.get(documents)).json() == []


async def test_a_name_with_spaces_in_it_is_still_a_name(client: httpx.AsyncClient) -> None:
    documents = await _agent(client)
    added = await client.post(documents, json={"name": " price list.md ", "text": "A cleaning is 90."})
    assert added.status_code == 201, added.text
    assert added.json()["name"] == " price list.md "


def test_the_command_line_refuses_a_blank_name(parley: typer.Typer, tmp_path: Path) -> None:
    assert run(parley, "agents", "create", "dentist").exit_code == 0
    faq = tmp_path / "faq.md"
    faq.write_text("We are closed on Sundays.\n")
    refused = run(parley, "agents", "docs", "add", "dentist", str(faq), "--name", " ")
    assert refused.exit_code == 2, refused.output
    assert "cannot be blank" in refused.output
    listed = run(parley, "agents", "docs", "list", "dentist", "--json")
    assert json.loads(listed.stdout) == []
