"""``/v1/agents/{id}/documents``: upload text, markdown and PDF, bounded; a call gets the agent's index."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from parley.platform.agents import NotFound
from parley.platform.documents import MAX_PDF_PAGES, MAX_UPLOAD_BYTES, DocumentError
from parley.platform.runtime import Platform
from tests.knowledge.pdfs import pdf_with_pages

MARKDOWN = "## Opening hours\nWe open Monday to Saturday, 9 to 5. We are closed on Sundays.\n"


async def _agent(client: httpx.AsyncClient, name: str = "dentist") -> dict[str, Any]:
    made = await client.post("/v1/agents", json={"name": name, "config": {"system_prompt": "Be brief."}})
    assert made.status_code == 201, made.text
    body: dict[str, Any] = made.json()
    return body


async def test_documents_are_uploaded_listed_replaced_and_removed(client: httpx.AsyncClient) -> None:
    agent = await _agent(client)
    base = f"/v1/agents/{agent['id']}/documents"
    text = await client.post(base, json={"name": "hours.md", "text": MARKDOWN, "kind": "markdown"})
    assert text.status_code == 201, text.text
    assert text.json()["content_type"] == "text/markdown" and text.json()["words"] == 16
    pdf = pdf_with_pages(["A cleaning costs 90 dollars.", "A check-up costs 60 dollars."])
    upload = await client.post(
        "/v1/agents/dentist/documents",
        params={"name": "prices.pdf"},
        content=pdf,
        headers={"Content-Type": "application/pdf"},
    )
    assert upload.status_code == 201, upload.text
    assert (upload.json()["pages"], upload.json()["size_bytes"]) == (2, len(pdf))

    listed = (await client.get(base)).json()
    assert [d["name"] for d in listed] == ["hours.md", "prices.pdf"]
    assert "text" not in listed[0], "listings do not carry the text"

    again = await client.post(
        base,
        params={"name": "hours.md"},
        content=b"We are open on Sundays now.",
        headers={"Content-Type": "text/markdown"},
    )
    assert again.status_code == 201
    assert [d["name"] for d in (await client.get(base)).json()] == ["prices.pdf", "hours.md"]

    assert (await client.delete(f"{base}/hours.md")).status_code == 204
    assert (await client.delete(f"{base}/{upload.json()['id']}")).status_code == 204
    assert (await client.get(base)).json() == []
    assert (await client.delete(f"{base}/hours.md")).status_code == 404


@pytest.mark.parametrize(
    ("body", "headers", "params", "status", "complaint"),
    [
        (
            b"x" * (MAX_UPLOAD_BYTES + 1),
            {"Content-Type": "text/plain"},
            {"name": "big.txt"},
            413,
            "over 2 MB",
        ),
        (
            pdf_with_pages(["page"] * (MAX_PDF_PAGES + 1)),
            {"Content-Type": "application/pdf"},
            {"name": "long.pdf"},
            413,
            "pages",
        ),
        (b"plain words", {"Content-Type": "application/pdf"}, {"name": "fake.pdf"}, 415, "not one"),
        (b"\xff\xfe\x00bin", {"Content-Type": "text/plain"}, {"name": "x.txt"}, 415, "UTF-8"),
        (b"  \n ", {"Content-Type": "text/plain"}, {"name": "x.txt"}, 422, "no text"),
        (b"%PDF-1.4 broken", {"Content-Type": "application/pdf"}, {"name": "x.pdf"}, 422, "readable PDF"),
        (b"words", {"Content-Type": "image/png"}, {"name": "x.png"}, 415, "unsupported"),
        (b"words", {"Content-Type": "text/plain"}, {}, 422, "`name`"),
        (b"words", {"Content-Type": "text/plain"}, {"name": "../etc/passwd"}, 422, "`name`"),
        (b'{"name": "a.md"}', {"Content-Type": "application/json"}, {}, 422, "text"),
    ],
)
async def test_bad_uploads_are_refused_with_a_reason(
    client: httpx.AsyncClient,
    body: bytes,
    headers: dict[str, str],
    params: dict[str, str],
    status: int,
    complaint: str,
) -> None:
    await _agent(client)
    refused = await client.post("/v1/agents/dentist/documents", content=body, headers=headers, params=params)
    assert refused.status_code == status, refused.text
    assert complaint in refused.text
    assert (await client.get("/v1/agents/dentist/documents")).json() == []


@pytest.mark.parametrize("params", [{"name": "multi.txt"}, {}])
async def test_a_multipart_form_upload_is_refused_with_how_to_send_the_file(
    client: httpx.AsyncClient, platform: Platform, params: dict[str, str]
) -> None:
    """``curl -F file=@faq.txt`` once stored the form's boundary lines and part headers as the text."""
    agent = await _agent(client)
    form = await client.post(
        f"/v1/agents/{agent['id']}/documents",
        params=params,
        files={"file": ("faq.txt", MARKDOWN.encode(), "text/plain")},
    )
    assert form.status_code == 415, form.text
    assert "multipart" in form.text and "--data-binary" in form.text, "it says how to send the file"
    assert (await client.get(f"/v1/agents/{agent['id']}/documents")).json() == []
    with pytest.raises(DocumentError, match="multipart") as refused:
        await platform.documents.add(
            platform.default_org_id,
            agent["id"],
            "faq.txt",
            b"--x\r\n\r\nhi\r\n--x--",
            "multipart/form-data; boundary=x",
        )
    assert refused.value.status == 415


async def test_documents_of_an_unknown_agent_or_another_org_are_not_found(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    missing = await client.post("/v1/agents/nobody/documents", json={"name": "a.txt", "text": "hello"})
    assert missing.status_code == 404
    assert (await client.get("/v1/agents/nobody/documents")).status_code == 404
    agent = await _agent(client)
    await client.post(f"/v1/agents/{agent['id']}/documents", json={"name": "a.txt", "text": "hello"})
    with pytest.raises(NotFound):
        await platform.documents.list("org_someone_else", agent["id"])


async def test_a_call_gets_the_agents_index_and_its_prompt_variables(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    agent = await _agent(client)
    base = f"/v1/agents/{agent['id']}/documents"
    await client.post(base, json={"name": "hours.md", "text": MARKDOWN, "kind": "markdown"})
    started = await client.post(
        f"/v1/agents/{agent['id']}/sessions",
        json={"caller_name": "Ana", "metadata": {"plan": "gold", "time_zone": "Europe/Paris"}},
    )
    assert started.status_code == 201, started.text
    live = await platform.connect_live_call(
        started.json()["token"], transport="websocket", client_ip=None, record=False
    )
    variables = live.variables()
    assert (variables.caller_name, variables.direction, variables.time_zone) == ("Ana", "web", "Europe/Paris")
    assert variables.metadata["plan"] == "gold"
    index = await live.knowledge()
    assert index is not None
    assert "closed on Sundays" in index.search("are you open on sunday", 200)[0].text
    assert await live.knowledge() is index, "unchanged documents are not indexed again"
    await client.post(base, json={"name": "prices.txt", "text": "A cleaning costs 90 dollars."})
    rebuilt = await live.knowledge()
    assert rebuilt is not index and rebuilt is not None and len(rebuilt) == 2
    for name in ("hours.md", "prices.txt"):
        await client.delete(f"{base}/{name}")
    assert await live.knowledge() is None
    await live.finish()
    detail = (await client.get(f"/v1/calls/{started.json()['call_id']}")).json()
    assert detail["metadata"] == {"plan": "gold", "time_zone": "Europe/Paris", "caller_name": "Ana"}


async def test_session_metadata_is_bounded(client: httpx.AsyncClient) -> None:
    agent = await _agent(client)
    huge = await client.post(f"/v1/agents/{agent['id']}/sessions", json={"metadata": {"x": "y" * 20_000}})
    assert huge.status_code == 422 and "16 KB" in huge.text
    plain = await client.post(f"/v1/agents/{agent['id']}/sessions")
    assert plain.status_code == 201, "the body stays optional"


async def test_the_body_cap_lets_a_document_through_but_no_other_large_request(platform: Platform) -> None:
    from parley.config import Settings
    from parley.server.limits import install_request_limits
    from tests.api.conftest import BOOT_KEY, make_app

    app = make_app(platform)
    install_request_limits(app, Settings(max_request_body_bytes=1024 * 1024))
    headers = {"Authorization": f"Bearer {BOOT_KEY}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://parley.test", headers=headers
    ) as http:
        await _agent(http)
        words = b"Cleaning costs 90 dollars. " * (1_500_000 // 27)
        upload = await http.post(
            "/v1/agents/dentist/documents",
            params={"name": "long.txt"},
            content=words,
            headers={"Content-Type": "text/plain"},
        )
        assert upload.status_code == 201, upload.text
        other = await http.post(
            "/v1/agents", content=b" " * 1_500_000, headers={"Content-Type": "text/plain"}
        )
        assert other.status_code == 413
