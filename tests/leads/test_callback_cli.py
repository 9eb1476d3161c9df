"""``parley leads callback`` and ``parley businesses page-link`` on the store a server would use."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from parley.cli import app as parley_app
from parley.config import Settings, get_settings
from parley.platform.leads import BusinessIn, LeadIn
from parley.platform.links import verify_business
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from tests.leads.conftest import business_body, lead_body
from tests.store.fixtures import run_sync

PUBLIC = "https://leads.example.com"


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    values = {
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_TWILIO_CALLER_ID": "+12125550199",
        "PARLEY_PUBLIC_URL": PUBLIC,
        "PARLEY_LINK_SECRET": "cli-link-secret-0123456789",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


async def _seed(settings: Settings) -> tuple[str, str, str]:
    platform = await Platform.open(settings, consume=False, recover=False)
    try:
        org = platform.default_org_id
        agent = await platform.agents.create(org, AgentCreate(name="callbacks"))
        business = await platform.leads.create_business(
            org, BusinessIn.model_validate(business_body(hours={}, agent_id=agent.id))
        )
        willing = await platform.leads.submit(org, LeadIn.model_validate(lead_body()), source="cli")
        unwilling = await platform.leads.submit(
            org, LeadIn.model_validate(lead_body(name="Charles", consent_to_call=False)), source="cli"
        )
        return business.id, willing.lead.id, unwilling.lead.id
    finally:
        await platform.close()


def run(app: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_a_callback_and_a_page_link_from_the_command_line(settings: Settings) -> None:
    business_id, willing, unwilling = run_sync(_seed(settings))

    made = run(parley_app, "leads", "callback", willing, "--json")
    assert made.exit_code == 0, made.output
    body = json.loads(made.stdout)
    assert (body["business_id"], body["status"], body["requested_by"]) == (
        business_id,
        "callback_queued",
        "cli",
    )
    again = run(parley_app, "leads", "callback", willing)
    assert again.exit_code == 0 and "asked for already" in again.stdout and body["job_id"] in again.stdout

    refused = run(parley_app, "leads", "callback", unwilling)
    assert refused.exit_code == 1 and "did not agree to be called" in refused.output

    link = run(parley_app, "businesses", "page-link", business_id, "--days", "2", "--json")
    assert link.exit_code == 0, link.output
    url = json.loads(link.stdout)["url"]
    assert url.startswith(f"{PUBLIC}/business/{business_id}/leads?token=")
    verify_business(settings, business_id, url.split("token=", 1)[1])
