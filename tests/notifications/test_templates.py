"""Notification templates: the defaults, an organization's own through ``/v1/notification-templates``,
and the sandbox that keeps a tenant's template from being anything but words."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from types import SimpleNamespace

import httpx
import pytest

from parley.notifications.templates import (
    KINDS,
    NAMES,
    SMS_MAX_CHARS,
    TemplateInvalid,
    default_body,
    lead_context,
    render,
    sample_context,
    validate,
)


@pytest.mark.parametrize("kind", KINDS)
def test_every_default_renders_within_bounds_and_passes_its_own_checks(kind: str) -> None:
    for name in NAMES:
        if name.startswith(kind + "."):
            validate(name, default_body(name))
    rendered = render(kind, {}, sample_context(kind))
    assert "Ada Lovelace" in rendered.subject and "\n" not in rendered.subject
    assert "Ada Lovelace" in rendered.text and "Ada Lovelace" in rendered.html
    assert 0 < len(rendered.sms) <= SMS_MAX_CHARS


def test_a_long_lead_still_fits_one_text() -> None:
    context = sample_context("new_lead")
    context["lead"] |= {"name": "N" * 200, "description": "word " * 400}
    assert len(render("new_lead", {}, context).sms) <= SMS_MAX_CHARS


def test_the_call_back_paragraph_is_there_only_with_a_link() -> None:
    context = sample_context("new_lead")
    with_link = render("new_lead", {}, context)
    assert context["callback_url"] in with_link.html and "Request an AI call-back" in with_link.html
    assert context["callback_url"] in with_link.text
    without = render("new_lead", {}, context | {"callback_url": None})
    assert "call-back" not in without.html and "AI assistant" not in without.text


def test_what_a_lead_wrote_is_escaped_in_html_and_kept_in_text() -> None:
    context = sample_context("new_lead")
    context["lead"] |= {"name": '<img src=x onerror="alert(1)">'}
    rendered = render("new_lead", {}, context)
    assert "<img" not in rendered.html and "&lt;img src=x" in rendered.html
    assert '<img src=x onerror="alert(1)">' in rendered.text


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ("{{ ''.__class__ }}", "__class__"),
        ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "not allowed"),
        ("{{ lead['__class__'] }}", "__class__"),
        ("{{ lead.items() }}", "call is not allowed"),
        ("{{ cycler.__init__.__globals__ }}", "__globals__"),
        ("{% set s = 'x' %}{{ s }}", "assign is not allowed"),
        ("{{ 'x' * 1000000000 }}", "mul is not allowed"),
        ("{{ '%0999999999d' % 1 }}", "mod is not allowed"),
        ("{{ lead.description | safe }}", "filter 'safe' is not allowed"),
        ("{{ lead.name | center(1000000000) }}", "filter 'center' is not allowed"),
        ("{% for a in lead.name %}{% for b in lead.name %}.{% endfor %}{% endfor %}", "loops inside loops"),
        ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "macro is not allowed"),
        ("{% include 'other.html' %}", "include is not allowed"),
        ("{% for c in lead.description %}" + "x" * 2000 + "{% endfor %}", "renders more"),
        ("{{ lead.no_such_field }}", "no attribute 'no_such_field'"),
        ("{{ lead.name ", "line 1"),
    ],
)
def test_a_tenant_template_that_is_more_than_words_is_refused(body: str, why: str) -> None:
    with pytest.raises(TemplateInvalid, match=re.escape(why)):
        validate("new_lead.html", body)


def test_a_text_template_that_renders_too_long_is_refused() -> None:
    with pytest.raises(TemplateInvalid, match="a text is at most 320"):
        validate("new_lead.sms", "{{ lead.description }} {{ lead.description }} {{ lead.description }}"
                 " {{ lead.description }} {{ lead.description }}")  # fmt: skip


def test_an_operator_template_may_not_name_a_business() -> None:
    """An unmatched lead has none: the sample data of each kind is shaped like the real one."""
    with pytest.raises(TemplateInvalid, match="'None' has no attribute 'name'"):
        validate("unmatched_lead.txt", "{{ business.name }}")
    validate("unmatched_lead.txt", "{% if business %}{{ business.name }}{% endif %}{{ lead.name }}")


# --- the API --------------------------------------------------------------------------------------------


async def test_an_organization_replaces_a_template_and_goes_back_to_the_default(
    client: httpx.AsyncClient,
) -> None:
    shipped = await client.get("/v1/notification-templates/new_lead.subject")
    assert shipped.status_code == 200, shipped.text
    assert shipped.json() | {"updated_at": None} == {
        "name": "new_lead.subject",
        "body": default_body("new_lead.subject"),
        "custom": False,
        "updated_at": None,
    }

    put = await client.put(
        "/v1/notification-templates/new_lead.subject", json={"body": "Lead: {{ lead.name }}"}
    )
    assert put.status_code == 200, put.text
    assert put.json()["custom"] is True and put.json()["updated_at"] is not None
    got = await client.get("/v1/notification-templates/new_lead.subject")
    assert got.json()["body"] == "Lead: {{ lead.name }}"
    listed = {t["name"]: t["custom"] for t in (await client.get("/v1/notification-templates")).json()}
    assert set(listed) == set(NAMES) and [n for n, custom in listed.items() if custom] == ["new_lead.subject"]

    assert (await client.delete("/v1/notification-templates/new_lead.subject")).status_code == 204
    assert (await client.get("/v1/notification-templates/new_lead.subject")).json()["custom"] is False
    again = await client.delete("/v1/notification-templates/new_lead.subject")
    assert again.status_code == 404


async def test_a_template_that_would_fail_is_refused_when_saved(client: httpx.AsyncClient) -> None:
    refused = await client.put(
        "/v1/notification-templates/new_lead.html", json={"body": "{{ ''.__class__ }}"}
    )
    assert refused.status_code == 422
    [error] = refused.json()["detail"]
    assert error["loc"] == ["body", "body"] and "__class__" in error["msg"]
    undefined = await client.put(
        "/v1/notification-templates/new_lead.txt", json={"body": "{{ lead.nickname }}"}
    )
    assert undefined.status_code == 422 and "nickname" in undefined.text
    assert (await client.get("/v1/notification-templates/new_lead.html")).json()["custom"] is False

    too_long = await client.put("/v1/notification-templates/new_lead.txt", json={"body": "x" * 20_001})
    assert too_long.status_code == 422


async def test_only_known_templates_and_only_with_a_key(client: httpx.AsyncClient) -> None:
    for method in ("GET", "PUT", "DELETE"):
        response = await client.request(
            method, "/v1/notification-templates/new_lead.exe", json={"body": "x"} if method == "PUT" else None
        )
        assert response.status_code == 404, (method, response.text)
    anonymous = await client.get("/v1/notification-templates/new_lead.html", headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_a_lead_is_received_in_its_own_time_zone() -> None:
    """The business reads "06:05 PST" for a lead from Los Angeles, not "14:05 UTC"."""
    created = datetime(2026, 12, 9, 14, 5, tzinfo=UTC)
    lead = SimpleNamespace(
        id="lead_1", name="Ada", phone="+14155550100", email=None, category="plumbing", postal_code="94107",
        description=None, consent_to_call=True, source="form", status="matched", created_at=created,
        time_zone="America/Los_Angeles",
    )  # fmt: skip
    assert lead_context(lead)["received"] == "2026-12-09 06:05 PST"
    assert (
        lead_context(SimpleNamespace(**{**vars(lead), "time_zone": None}))["received"]
        == "2026-12-09 14:05 UTC"
    )
