"""The lead pages in real headless Chromium, against the served app (with the local Twilio, so the business's
"Request AI call" button can queue a call).

A visitor fills the consumer form: a phone number that is not one is refused next to the phone field
(and nothing is stored), the corrected form is accepted and thanked for, consent unchecked by default.
The business opens its signed leads page, sees the lead and its status, presses "Request AI call" and
sees the lead queued. Screenshots go to artifacts/lead_form_errors.png, lead_form.png and business_leads.png.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parley.audio.wav import write_wav
from tests.engine.harness import agent
from tests.phone.conftest import PARLEY_NUMBER, PERSON, phone_lab
from tests.web.browser import Page, chromium, chromium_path

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is missing: run scripts/install_browser.sh"
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

FORM = """JSON.stringify({
  errors: Object.fromEntries([...document.querySelectorAll('.error')].filter(e => !e.hidden)
    .map(e => [e.id.replace('error-', ''), e.textContent])),
  invalid: [...document.querySelectorAll('[aria-invalid=true]')].map(e => e.id),
  thanks: !document.getElementById('thanks').hidden,
  formShown: !document.getElementById('lead-form').hidden,
  failure: (e => e.hidden ? null : e.textContent)(document.getElementById('form-error')),
  consent: document.getElementById('consent_to_call').checked,
  categories: [...document.querySelectorAll('#category option')].map(o => o.value),
})"""

BUSINESS = """JSON.stringify({
  rows: [...document.querySelectorAll('#leads tr.lead')].map(r => ({
    name: r.querySelector('.name').textContent, status: r.querySelector('.status').textContent,
    action: r.querySelector('.action').textContent.trim()})),
  flash: document.getElementById('flash')?.textContent ?? null,
})"""


async def _until(page: Page, script: str, predicate: str, limit_s: float, what: str) -> dict[str, Any]:
    state: dict[str, Any] = {}
    try:
        async with asyncio.timeout(limit_s):
            while True:
                if await page.evaluate("document.readyState") == "complete":
                    state = json.loads(await page.evaluate(script))
                    if await page.evaluate(f"(d => Boolean({predicate}))({json.dumps(state)})"):
                        return state
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(
            f"{what}: not within {limit_s} s; page: {state}; console: {page.console}"
        ) from None


async def _type(page: Page, field: str, value: str) -> None:
    await page.evaluate(f"document.getElementById({json.dumps(field)}).value = {json.dumps(value)}")


async def test_the_form_and_the_business_page_in_a_browser(tmp_path: Path) -> None:
    silence = tmp_path / "silence.wav"
    write_wav(silence, np.zeros(1600, np.int16), 16000)  # the browser helper wants a microphone
    async with phone_lab(tmp_path, link_secret="web-link-secret-0123456789") as lab:
        agent_id = await lab.add_agent(agent(name="hudson-callbacks"), number=PARLEY_NUMBER)
        lab.twilio.script(PERSON, outcomes=["busy", "busy", "busy"])
        made = await lab.api.post(
            "/v1/businesses",
            json={
                "name": "Hudson Plumbing",
                "category": "plumbing",
                "postal_codes": ["20001"],
                "time_zone": "America/New_York",
                "notify_email": "desk@hudson.example.com",
                "notify_phone": "+12125550100",
                "agent_id": agent_id,
            },
        )
        assert made.status_code == 201, made.text
        business_id = made.json()["id"]

        async with chromium(silence) as page:
            await page.send("Page.navigate", url=f"{lab.base}/leads/form/default")
            state = await _until(page, FORM, "d.formShown", 10, "the form")
            assert state["consent"] is False, "consent is not given by default"
            assert state["categories"] == ["", "plumbing"]
            for field, value in (
                ("name", "Ada Lovelace"),
                ("phone", "555 12"),
                ("category", "plumbing"),
                ("postal_code", "20001"),
                ("description", "The kitchen sink leaks."),
            ):
                await _type(page, field, value)
            await page.evaluate("document.getElementById('submit').click()")
            state = await _until(page, FORM, "Object.keys(d.errors).length > 0", 10, "the field errors")
            assert list(state["errors"]) == ["phone"] and state["invalid"] == ["phone"]
            assert "phone number" in state["errors"]["phone"]
            await page.screenshot(ARTIFACTS / "lead_form_errors.png")
            assert (await lab.api.get("/v1/leads")).json()["data"] == [], "nothing stored"

            await _type(page, "phone", PERSON)
            await page.evaluate("document.getElementById('consent_to_call').click()")
            await page.evaluate("document.getElementById('submit').click()")
            state = await _until(page, FORM, "d.thanks", 10, "the thank-you")
            assert not state["formShown"] and state["failure"] is None
            await page.screenshot(ARTIFACTS / "lead_form.png")
            [lead] = (await lab.api.get("/v1/leads")).json()["data"]
            assert (lead["name"], lead["phone"], lead["source"]) == ("Ada Lovelace", PERSON, "form")
            assert lead["consent_to_call"] is True and lead["status"] == "matched"

            link = await lab.api.post(f"/v1/businesses/{business_id}/page-link", json={})
            await page.send("Page.navigate", url=link.json()["url"])
            state = await _until(page, BUSINESS, "d.rows.length === 1", 10, "the business's leads")
            assert state["rows"] == [
                {"name": "Ada Lovelace", "status": "matched", "action": "Request AI call"}
            ]
            await page.evaluate("document.querySelector('.request-call').click()")
            state = await _until(page, BUSINESS, "d.flash !== null", 10, "the call requested")
            assert (
                state["flash"]
                == "AI call-back of Ada Lovelace queued: you will get an email with the outcome."
            )
            assert state["rows"][0]["status"] == "callback queued" and state["rows"][0]["action"] == "Queued"
            await page.screenshot(ARTIFACTS / "business_leads.png")
            assert not [line for line in page.console if line.startswith("EXCEPTION")], page.console
        jobs = (await lab.api.get("/v1/outbound-jobs")).json()["data"]
        assert [job["metadata"]["requested_by"] for job in jobs] == ["business_page"]
