"""Phone numbers are the operator's to give: one Twilio account carries every organization, and an
inbound call goes to whoever holds its ``To`` number, so an organization that could take a number for
itself would take another's callers (their calls, transcripts and recordings on its books) and could
show that number as its caller id. An organization's API key routes the numbers the operator assigned
to it, and is told the same about a free number as about another organization's."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner, Result

from parley.cli import app
from parley.config import get_settings
from parley.logs import configure_logging
from parley.platform.schemas import AgentCreate
from parley.store.tenants import TenantRepository
from tests.telephony.conftest import CALLER, NUMBER, Phone, call_sid
from tests.telephony.test_webhooks import incoming, stream_of

FREE = "+14155550177"
"""A number in the Twilio account that nobody was given."""


@dataclass
class Tenant:
    org_id: str
    headers: dict[str, str]
    """Its API key, as a request sends it."""
    agents: dict[str, str]
    """Its agents' ids by name."""


async def tenant(phone: Phone, slug: str, *agents: str) -> Tenant:
    """An organization with an API key and the agents named."""
    async with phone.platform.db.session() as session:
        org = await TenantRepository(session).ensure_org(slug)
        key = (await TenantRepository(session).create_key(org.id, "tests")).secret
    made = {name: (await phone.platform.agents.create(org.id, AgentCreate(name=name))).id for name in agents}
    return Tenant(org.id, {"Authorization": f"Bearer {key}"}, made)


async def test_an_organization_cannot_take_a_number_the_operator_gave_another(phone: Phone) -> None:
    """Threat: a tenant claims another tenant's number (before it is routed, or while it is re-routed)."""
    bakery = await tenant(phone, "bay-bakery", "front-desk", "night-desk")
    theirs, mine = bakery.headers, (await tenant(phone, "acme", "impostor")).headers
    await phone.platform.phone.assign_number(bakery.org_id, NUMBER)  # the operator: parley numbers assign

    taken = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "impostor"}, headers=mine
    )
    free = await phone.http.post(
        "/v1/phone-numbers", json={"number": FREE, "agent": "impostor"}, headers=mine
    )
    assert (taken.status_code, free.status_code) == (403, 403), (taken.text, free.text)
    said = taken.json()["detail"]
    assert said.replace(NUMBER, "N") == free.json()["detail"].replace(FREE, "N"), "a held number looks free"
    for telling in ("bay-bakery", bakery.org_id, "already", "registered", "another organization"):
        assert telling not in said, telling
    assert (await phone.http.get("/v1/phone-numbers", headers=mine)).json()["data"] == []

    routed = await phone.http.post(
        "/v1/phone-numbers", json={"number": "+1 415 555 0100", "agent": "front-desk"}, headers=theirs
    )
    assert routed.status_code == 201, routed.text
    number = routed.json()
    again = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "impostor"}, headers=mine
    )
    assert again.status_code == 403 and again.json()["detail"] == said, "routed or not, the same refusal"

    for ref in (NUMBER, number["id"]):  # nor can it change or drop the number, any more than a free one
        for change in (
            phone.http.patch(f"/v1/phone-numbers/{ref}", json={"agent": "impostor"}, headers=mine),
            phone.http.delete(f"/v1/phone-numbers/{ref}", headers=mine),
        ):
            response = await change
            assert response.status_code == 404 and "bay-bakery" not in response.text
    unheld = await phone.http.patch(f"/v1/phone-numbers/{FREE}", json={"agent": "impostor"}, headers=mine)
    assert unheld.status_code == 404

    # The bakery re-routes its number in place: there is no moment in which it is free to take.
    moved = await phone.http.patch(
        f"/v1/phone-numbers/{number['id']}", json={"agent": "night-desk", "label": "nights"}, headers=theirs
    )
    assert moved.status_code == 200, moved.text
    assert (moved.json()["agent_id"], moved.json()["label"]) == (bakery.agents["night-desk"], "nights")
    parked = await phone.http.patch(f"/v1/phone-numbers/{NUMBER}", json={"agent": None}, headers=theirs)
    assert parked.status_code == 200 and parked.json()["agent_id"] is None
    back = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "front-desk"}, headers=theirs
    )
    assert back.status_code == 201 and back.json()["id"] == number["id"]
    twice = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "night-desk"}, headers=theirs
    )
    assert twice.status_code == 409 and "PATCH" in twice.json()["detail"], "its own number: it may be told"

    # Given back, it is the operator's again: not the first tenant's to grab.
    assert (await phone.http.delete(f"/v1/phone-numbers/{NUMBER}", headers=theirs)).status_code == 204
    grab = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "impostor"}, headers=mine
    )
    assert grab.status_code == 403 and grab.json()["detail"] == said
    mine_too = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "front-desk"}, headers=theirs
    )
    assert mine_too.status_code == 403, "once given back, only the operator gives it again"


async def test_the_operators_organization_takes_free_numbers_but_not_another_organizations(
    phone: Phone,
) -> None:
    """Single-tenant use stays one step: ``PARLEY_API_KEY`` (the operator's organization) routes any free
    number, as ``parley numbers add`` does on the host; a number given to a tenant stays the tenant's."""
    await phone.agent()
    bakery = await tenant(phone, "bay-bakery")
    await phone.platform.phone.assign_number(bakery.org_id, NUMBER)
    taken = await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "support"})
    assert taken.status_code == 409 and "bay-bakery" not in taken.json()["detail"]
    added = await phone.http.post("/v1/phone-numbers", json={"number": FREE, "agent": "support"})
    assert added.status_code == 201, added.text


async def test_inbound_calls_to_a_number_reach_the_organization_it_was_assigned_to(phone: Phone) -> None:
    """Threat: a tenant pre-claims a number the operator bought for another, and takes its callers."""
    bakery = await tenant(phone, "bay-bakery", "front-desk")
    mine = (await tenant(phone, "acme", "impostor")).headers
    await phone.platform.phone.assign_number(bakery.org_id, NUMBER)  # bought for the bakery, not routed yet
    early = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "impostor"}, headers=mine
    )
    assert early.status_code == 403
    routed = await phone.http.post(
        "/v1/phone-numbers", json={"number": NUMBER, "agent": "front-desk"}, headers=bakery.headers
    )
    assert routed.status_code == 201, routed.text

    _url, parameters = stream_of(await phone.webhook("/twilio/voice", incoming(call_sid(1))))
    call = await phone.http.get(f"/v1/calls/{parameters['call_id']}", headers=bakery.headers)
    assert call.status_code == 200, call.text
    assert (call.json()["agent_id"], call.json()["to_number"]) == (bakery.agents["front-desk"], NUMBER)
    assert (await phone.http.get(f"/v1/calls/{parameters['call_id']}", headers=mine)).status_code == 404
    assert (await phone.http.get("/v1/calls", headers=mine)).json()["data"] == []


async def test_a_number_is_no_caller_id_for_an_organization_it_is_not_assigned_to(phone: Phone) -> None:
    """Threat: a tenant shows another tenant's number to the people it calls."""
    bakery = await tenant(phone, "bay-bakery", "front-desk")
    theirs, mine = bakery.headers, (await tenant(phone, "acme", "impostor")).headers
    await phone.platform.phone.assign_number(bakery.org_id, NUMBER, "front-desk")
    await phone.http.post("/v1/phone-numbers", json={"number": NUMBER, "agent": "impostor"}, headers=mine)

    spoofed = await phone.http.post(
        "/v1/calls", json={"agent": "impostor", "to": CALLER, "from": NUMBER}, headers=mine
    )
    assert spoofed.status_code == 422, spoofed.text
    assert "from" in spoofed.text and "bay-bakery" not in spoofed.text
    defaulted = await phone.http.post("/v1/calls", json={"agent": "impostor", "to": CALLER}, headers=mine)
    assert defaulted.status_code == 422, "no number of its own, and none configured: nothing to call from"
    assert (await phone.http.get("/v1/outbound-jobs", headers=mine)).json()["data"] == []

    owned = await phone.http.post(
        "/v1/calls", json={"agent": "front-desk", "to": CALLER, "from": NUMBER}, headers=theirs
    )
    assert owned.status_code == 202 and owned.json()["from_number"] == NUMBER, owned.text
    first = await phone.http.post("/v1/calls", json={"agent": "front-desk", "to": CALLER}, headers=theirs)
    assert first.status_code == 202 and first.json()["from_number"] == NUMBER, "its own number by default"


# --- the operator, on the host ------------------------------------------------------------------------


@pytest.fixture
def parley(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    """The ``parley`` command line itself, on a store of its own."""
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    for name in ("PARLEY_DATABASE_URL", "PARLEY_TWILIO_CALLER_ID", "PARLEY_DEFAULT_ORG"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    configure_logging()  # as the CLI does: logs on stderr, stdout is the command's output
    yield app
    get_settings.cache_clear()


def run(app: typer.Typer, *args: str, org: str | None = None) -> Result:
    """``parley ARGS`` (with ``PARLEY_DEFAULT_ORG=org``, as an operator acts in another organization)."""
    get_settings.cache_clear()
    env = {"PARLEY_DEFAULT_ORG": org} if org else None
    result = CliRunner().invoke(app, list(args), env=env)
    get_settings.cache_clear()
    return result


def said(result: Result) -> str:
    return " ".join((result.stdout + result.stderr).split())


def test_the_operator_assigns_numbers_to_organizations(
    parley: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(parley, "agents", "create", "front-desk", org="bay-bakery").exit_code == 0
    assert run(parley, "agents", "create", "support").exit_code == 0

    assign = ("numbers", "assign", "+1 415 555 0100", "--org", "bay-bakery", "--agent", "front-desk")
    assigned = run(parley, *assign, "--json")
    assert assigned.exit_code == 0, said(assigned)
    row = json.loads(assigned.stdout)
    assert row["number"] == NUMBER and row["agent_id"] is not None
    listed = json.loads(run(parley, "numbers", "list", "--json", org="bay-bakery").stdout)
    assert [(n["number"], n["agent_id"]) for n in listed] == [(NUMBER, row["agent_id"])]

    taken = run(parley, "numbers", "add", NUMBER, "--agent", "support")
    assert taken.exit_code == 1 and "another organization" in said(taken), "it takes free numbers only"
    elsewhere = run(parley, "numbers", "assign", NUMBER, "--org", "default")
    assert elsewhere.exit_code == 1 and "bay-bakery" in said(elsewhere), "the operator is told who has it"
    assert "unassign" in said(elsewhere)
    nobody = run(parley, "numbers", "assign", FREE, "--org", "nobody")
    assert nobody.exit_code == 1 and "no organization 'nobody'" in said(nobody)
    wrong_agent = run(parley, "numbers", "assign", FREE, "--org", "bay-bakery", "--agent", "support")
    assert wrong_agent.exit_code == 1 and "no agent 'support'" in said(wrong_agent), "not the bakery's"
    assert run(parley, "numbers", "assign", "555-0100", "--org", "bay-bakery").exit_code == 2

    bare = run(parley, "numbers", "assign", FREE, "--org", "bay-bakery")
    assert bare.exit_code == 0 and "no agent answers it yet" in said(bare)
    relabel = run(parley, "numbers", "assign", FREE, "--org", "bay-bakery", "--label", "spare", "--json")
    assert relabel.exit_code == 0 and json.loads(relabel.stdout)["label"] == "spare"

    released = run(parley, "numbers", "unassign", NUMBER, "--json")
    assert released.exit_code == 0 and json.loads(released.stdout) == {
        "unassigned": NUMBER,
        "org": "bay-bakery",
    }
    assert run(parley, "numbers", "unassign", NUMBER).exit_code == 1
    assert run(parley, "numbers", "add", NUMBER, "--agent", "support").exit_code == 0, "free again"

    monkeypatch.setenv("PARLEY_TWILIO_CALLER_ID", "+1 415 555 0199")
    shared = run(parley, "numbers", "assign", "+14155550199", "--org", "bay-bakery")
    assert shared.exit_code == 1 and "PARLEY_TWILIO_CALLER_ID" in said(shared), (
        "every organization calls from it"
    )
    assert run(parley, "numbers", "assign", "+14155550199", "--org", "default").exit_code == 0
