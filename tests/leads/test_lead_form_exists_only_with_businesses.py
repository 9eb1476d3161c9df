"""Threats: (a) every organization had a public lead form, so anyone could learn that a slug exists from a
200 where an unknown slug gets a 404; (b) anyone could post leads into an organization with no business
at all, where no business can ever be told of them. An organization's form (the page and its endpoint)
now exists only while it has an active business, the kind a lead is matched to; for any other the
answer is exactly an unknown slug's, and nothing is stored. The API-key path is unchanged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from parley.config import Settings
from parley.platform.runtime import Platform
from parley.store.models import Lead, LeadNotification
from parley.store.tenants import TenantRepository
from tests.leads.conftest import OPERATOR, business_body, callback_settings, lead_body, platform_app

NONCE = re.compile(r"nonce-[A-Za-z0-9_-]+|nonce=\"[A-Za-z0-9_-]+\"")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return callback_settings(db_url, tmp_path)


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return platform_app(platform)


def _seen(response: httpx.Response) -> tuple[int, str, str, str]:
    """What a visitor can compare: status, content type, policy and body (each page's nonce is random)."""
    return (
        response.status_code,
        response.headers.get("content-type", ""),
        NONCE.sub("nonce", response.headers.get("content-security-policy", "")),
        NONCE.sub("nonce", response.text),
    )


async def _org_with_a_closed_business(platform: Platform, client: httpx.AsyncClient) -> str:
    """An organization (slug ``closed``) whose only business was deactivated: it takes no leads."""
    async with platform.db.session() as session:
        tenants = TenantRepository(session)
        org = await tenants.ensure_org("closed", "Closed Plumbing Co")
        key = await tenants.create_key(org.id)
    theirs = {"Authorization": f"Bearer {key.secret}"}
    made = await client.post("/v1/businesses", json=business_body(), headers=theirs)
    assert made.status_code == 201, made.text
    gone = await client.delete(f"/v1/businesses/{made.json()['id']}", headers=theirs)
    assert gone.status_code == 200 and gone.json()["active"] is False
    return org.id


async def _count(platform: Platform, model: type[Any]) -> int:
    async with platform.db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_the_form_of_an_organization_without_a_business_is_an_unknown_slugs_404(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, platform: Platform
) -> None:
    await _org_with_a_closed_business(platform, client)
    unknown = await anon.get("/leads/form/nobody")
    assert unknown.status_code == 404, unknown.text
    for ref in ("default", platform.default_org_id, "closed"):
        page = await anon.get(f"/leads/form/{ref}")
        assert _seen(page) == _seen(unknown), f"{ref}: told apart from an unknown slug"
        assert "Closed Plumbing Co" not in page.text

    made = await client.post("/v1/businesses", json=business_body(category="roof-repair"))
    assert made.status_code == 201, made.text
    form = await anon.get("/leads/form/default")
    assert form.status_code == 200, form.text
    assert 'value="roof-repair"' in form.text and "/v1/public/leads/default" in form.text


async def test_the_public_endpoint_refuses_alike_and_stores_nothing(
    client: httpx.AsyncClient, anon: httpx.AsyncClient, platform: Platform
) -> None:
    closed_id = await _org_with_a_closed_business(platform, client)
    unknown = await anon.post("/v1/public/leads/nobody", json=lead_body())
    assert unknown.status_code == 404, unknown.text
    for ref in ("default", "closed", closed_id):
        refused = await anon.post(f"/v1/public/leads/{ref}", json=lead_body())
        assert (refused.status_code, refused.text) == (unknown.status_code, unknown.text), ref
    assert await _count(platform, Lead) == 0, "no lead is stored where no business could be told"
    assert await _count(platform, LeadNotification) == 0, "and the operator is not mailed about one"

    await client.post("/v1/businesses", json=business_body())
    taken = await anon.post("/v1/public/leads/default", json=lead_body())
    assert taken.status_code == 201, taken.text
    assert await _count(platform, Lead) == 1


async def test_the_api_key_still_submits_leads_to_its_own_organization_without_businesses(
    client: httpx.AsyncClient,
) -> None:
    """Integrations are unchanged: such a lead is kept ``unmatched`` and the operator is told."""
    made = await client.post("/v1/leads", json=lead_body())
    assert made.status_code == 201, made.text
    assert made.json()["status"] == "unmatched" and made.json()["matches"] == []
    sent = (await client.get(f"/v1/leads/{made.json()['id']}/notifications")).json()
    assert [(n["kind"], n["recipient"]) for n in sent] == [("unmatched_lead", OPERATOR)]
