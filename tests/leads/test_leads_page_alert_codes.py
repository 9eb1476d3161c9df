"""Threat: a business's leads page shows whatever text its URL carries as the page's red alert. A link
that is genuine (its token valid) with ``&refused=Your link expired. Call +1-900-…`` added would show a
stranger's words, under the business's own name, as the server's. The redirect after "Request AI call"
names a message code; the page shows only the server's words for a code it knows, and nothing otherwise.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
from fastapi import FastAPI

from parley.config import Settings
from parley.jobs.outbound import OutboundQueue
from parley.platform.runtime import Platform
from tests.jobs.test_outbound import FakeDialer
from tests.leads.conftest import (
    CALLBACK_PUBLIC_URL,
    business_body,
    callback_settings,
    lead_body,
    platform_app,
)

PUBLIC = CALLBACK_PUBLIC_URL
SCAM = "Your link expired. Call +1-900-555-0100 to renew it"


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return callback_settings(db_url, tmp_path)


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    """The platform's routers with the outbound queue and a (fake) carrier, as the server has them."""
    dialer = FakeDialer()
    return platform_app(platform, OutboundQueue(platform, platform.settings, dialer), dialer)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """No key: a business opening the link it was sent."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=PUBLIC) as http:
        yield http


async def leads_page(client: httpx.AsyncClient) -> tuple[str, str, str]:
    """A business with an agent and a lead who did not agree to be called: the page's path, its token
    and the lead's id."""
    agent = await client.post("/v1/agents", json={"name": "hudson-desk"})
    assert agent.status_code == 201, agent.text
    business = await client.post("/v1/businesses", json=business_body(agent_id=agent.json()["id"]))
    assert business.status_code == 201, business.text
    business_id = business.json()["id"]
    lead = await client.post("/v1/leads", json=lead_body(consent_to_call=False))
    assert lead.status_code == 201, lead.text
    link = await client.post(f"/v1/businesses/{business_id}/page-link", json={})
    assert link.status_code == 200, link.text
    url = link.json()["url"]
    path = url[len(PUBLIC) :]
    return path, parse_qs(urlsplit(url).query)["token"][0], lead.json()["id"]


async def test_text_put_into_the_link_is_not_shown_as_an_alert(
    client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    path, _, _ = await leads_page(client)
    forged = await browser.get(f"{path}&refused={quote(SCAM)}")
    assert forged.status_code == 200, forged.text
    assert "+1-900" not in forged.text and "link expired" not in forged.text
    assert 'id="flash"' not in forged.text and 'role="alert"' not in forged.text
    unknown = await browser.get(f"{path}&refused=no_such_code")
    assert unknown.status_code == 200 and 'id="flash"' not in unknown.text


async def test_a_refused_call_back_comes_back_as_a_code_the_page_words(
    client: httpx.AsyncClient, browser: httpx.AsyncClient
) -> None:
    path, token, lead_id = await leads_page(client)
    business_id = path.split("/")[2]
    refused = await browser.post(f"/business/{business_id}/leads/{lead_id}/callback", data={"token": token})
    assert refused.status_code == 303
    assert parse_qs(urlsplit(refused.headers["location"]).query)["refused"] == ["no_consent"]
    shown = await browser.get(refused.headers["location"])
    assert shown.status_code == 200
    assert 'role="alert">This person did not agree to be called' in shown.text
    assert lead_id not in shown.text.split('id="flash"', 1)[1].split("</p>", 1)[0], "no server internals"
