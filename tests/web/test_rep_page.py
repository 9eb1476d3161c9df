"""The rep page of a coached call in real headless Chromium, against the served app (scripted engines).

The page opens with the link ``POST /v1/rooms/{id}/participants`` returns; Chromium's fake microphone
joins the room as the rep. A Python customer leg says the objection: the page shows a hint card (read from
the DOM) and the customer's line, then the rep's own line once its microphone has spoken, and who is in
the room and how they are heard. A screenshot is saved to artifacts/rep_page.png.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from parley.audio.wav import write_wav
from parley.providers.llm.scripted import ScriptRule
from tests.coaching.kit import CUSTOMER_HZ, REP_HZ, api, invite, join, open_room, room_server, tone
from tests.server.conftest import talking
from tests.web.browser import Page, chromium, chromium_path

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is missing: run scripts/install_browser.sh"
)

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
RATE = 16000
OBJECTION = "honestly the price is too high for us"
ANSWER = "I hear you, let me show what you get for it"
REP_SPEAKS_AT_S = 7.0
"""Into the rep's microphone: late enough that the customer's objection is transcribed first (the
scripted recogniser hands out its lines in order)."""


def _rep_microphone(path: Path) -> Path:
    silence = np.zeros(int(REP_SPEAKS_AT_S * RATE), np.int16)
    write_wav(path, np.concatenate([silence, tone(1.2, REP_HZ), np.zeros(4 * RATE, np.int16)]), RATE)
    return path


DOM = """JSON.stringify(!document.getElementById('people') ? {connection: 'loading', hints: [], lines: []} : {
  connection: document.getElementById('connection').textContent,
  hints: [...document.querySelectorAll('#hints .hint')].map(c => ({
    trigger: c.querySelector('.trigger').textContent, text: c.querySelector('.text').textContent})),
  lines: [...document.querySelectorAll('#transcript .line[data-role]')].map(l => ({
    role: l.dataset.role, speaker: l.querySelector('.speaker').textContent,
    text: l.querySelector('.text').textContent})),
  people: [...document.querySelectorAll('#people .person')].map(p => p.textContent),
  error: document.getElementById('error').hidden ? null : document.getElementById('error').textContent,
  live: document.getElementById('hints').getAttribute('aria-live'),
})"""


async def _until(page: Page, predicate: str, limit_s: float, what: str) -> dict[str, Any]:
    """Poll the page's DOM (as ``d``) until ``predicate`` holds."""
    state: dict[str, Any] = {}
    try:
        async with asyncio.timeout(limit_s):
            while True:
                state = json.loads(await page.evaluate(DOM))
                if await page.evaluate(f"(d => Boolean({predicate}))({json.dumps(state)})"):
                    return state
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(
            f"{what}: not within {limit_s} s; page: {state}; console: {page.console}"
        ) from None


async def test_the_rep_page_shows_hints_and_both_sides_as_the_call_goes(tmp_path: Path) -> None:
    microphone = _rep_microphone(tmp_path / "rep.wav")
    rewrite = ScriptRule.say("objects to the price", "Ask which budget they had in mind.")
    async with room_server(tmp_path, [OBJECTION, ANSWER], [rewrite]) as served, api(served) as http:
        room = await open_room(http, use_llm=True)
        rep = await invite(http, room["id"], "rep")
        customer, _ = await join(await invite(http, room["id"], "customer"))
        async with chromium(microphone) as page:
            await page.send("Page.navigate", url=f"{served.base}{rep['page_url']}&autojoin=1&processing=0")
            state = await _until(page, "d.connection === 'connected'", 15, "joining the room")
            assert state["live"] == "polite", "hint cards are announced"
            async with talking(customer) as mic:
                await mic.say(tone(1.0, CUSTOMER_HZ))
                state = await _until(page, "d.hints.length > 0", 5, "a hint card")
                assert state["hints"][0]["trigger"] == "price objection"
                state = await _until(
                    page, "d.hints[0].text.includes('budget')", 5, "the model's rewrite of the card"
                )
                assert len(state["hints"]) == 1, "the rewrite replaced the card's words, it added none"
                state = await _until(
                    page,
                    "d.lines.some(l => l.role === 'customer') && d.lines.some(l => l.role === 'rep')",
                    REP_SPEAKS_AT_S + 8,
                    "both sides' lines in the transcript",
                )
            said = {line["role"]: line for line in state["lines"]}
            assert said["customer"]["text"] == OBJECTION and said["customer"]["speaker"] == "Customer"
            assert said["rep"]["text"] == ANSWER and said["rep"]["speaker"] == "You"
            people = " | ".join(state["people"])
            assert "AI coach" in people and "whispering to the rep" in people and "(you)" in people
            assert state["error"] is None
            await page.screenshot(ARTIFACTS / "rep_page.png")
            rep_page = json.loads(await page.evaluate("JSON.stringify(window.rep)"))
            assert rep_page["stats"]["framesReceived"] > 0 and rep_page["stats"]["framesSent"] > 0
            assert not [line for line in page.console if line.startswith("EXCEPTION")], page.console
        await customer.close()
