"""The voice page's agent list and ``?agent=`` in real headless Chromium, with agents made through the API.

No models: the server runs the fast scripted engines, so only the page and the admission rules are under
test. An agent made with ``POST /v1/agents`` is listed and selectable; a name nobody has is a visible
error, with nothing else picked in its place; a start the server refuses says why on the page.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from parley.audio.wav import write_wav
from tests.engine.harness import agent
from tests.server.conftest import Served, fast_engines, serving
from tests.web.browser import Page, chromium, chromium_path

pytestmark = pytest.mark.skipif(
    chromium_path() is None, reason="chromium is missing: run scripts/install_browser.sh"
)

KEY = "pk_agent-picker-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


async def _until(page: Page, predicate: str, limit_s: float, what: str) -> dict[str, Any]:
    """Poll the page until ``predicate`` (JS over ``p``: window.parley, ``$``: getElementById) holds."""
    probe = (
        "(() => { const p = window.parley || {}; const $ = (id) => document.getElementById(id);"
        " if (window.leftBehind || !$('error') || !window.parley) return JSON.stringify({ok: false});"
        " return JSON.stringify({ok: Boolean(" + predicate + "), agent: p.agent, sessionId: p.sessionId,"
        " error: $('error').hidden ? null : $('error').textContent, connectDisabled: $('connect').disabled,"
        " selected: $('agent').value, options: [...$('agent').options].map(o => o.value),"
        " transcript: p.transcript || []}); })()"
    )
    state: dict[str, Any] = {}
    try:
        async with asyncio.timeout(limit_s):
            while True:
                state = json.loads(await page.evaluate(probe))
                if state["ok"]:
                    return state
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(
            f"{what}: not within {limit_s} s; page: {state}; console: {page.console}"
        ) from None


async def _open(page: Page, url: str) -> None:
    """Navigate; the old document is marked, so nothing read from it passes for the new one."""
    await page.evaluate("window.leftBehind = true")
    await page.send("Page.navigate", url=url)


async def _agents(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
        for name, public in (("desk", True), ("back-office", False)):
            config = {"name": name, "public": public, "first_message": f"This is {name}."}
            made = await http.post("/v1/agents", json={"name": name, "config": config})
            assert made.status_code == 201, made.text


async def test_the_page_lists_api_agents_and_never_silently_picks_another(tmp_path: Path) -> None:
    microphone = tmp_path / "silence.wav"
    write_wav(microphone, np.zeros(16000 * 3, np.int16), 16000)
    engines = fast_engines([], [])
    async with (
        serving(
            engines, agents=[agent(name="assistant")], platform=True, data_dir=tmp_path, api_key=KEY
        ) as served,
        chromium(microphone) as page,
    ):
        await _agents(served)
        voice = f"{served.base}/voice/"

        await _open(page, f"{voice}?agent=desk")
        state = await _until(page, "p.agent !== undefined", 10, "loading the agent list")
        assert state["options"] == ["assistant", "desk"], "API agents are listed, private ones are not"
        assert (state["selected"], state["error"], state["connectDisabled"]) == ("desk", None, False)

        await _open(page, f"{voice}?agent=dsek&autoconnect=1")
        state = await _until(page, "p.agent !== undefined", 10, "loading the agent list")
        assert state["error"] is not None and "dsek" in state["error"] and "desk" in state["error"]
        assert state["agent"] is None and state["selected"] == "", "no other agent is picked in its place"
        assert state["connectDisabled"] and state["sessionId"] is None, "autoconnect does not go ahead"

        await page.evaluate(
            "(() => { const s = document.getElementById('agent'); s.value = 'desk';"
            " s.dispatchEvent(new Event('change')); })()"
        )
        state = await _until(page, "p.agent === 'desk'", 5, "picking an agent from the list")
        assert state["error"] is None and not state["connectDisabled"]
        await page.evaluate("document.getElementById('connect').click()")
        state = await _until(
            page, "p.transcript.some(l => l.role === 'agent')", 15, "the API agent's greeting on the page"
        )
        assert any(line["text"] == "This is desk." for line in state["transcript"]), state["transcript"]
        await page.evaluate("document.getElementById('hangup').click()")

        await _open(page, f"{voice}?agent=back-office")
        state = await _until(page, "p.agent !== undefined", 10, "loading the agent list")
        assert state["error"] is not None and "no agent named 'back-office'" in state["error"], (
            "a private agent's name is as unknown to strangers as one nobody has"
        )

        await _open(page, f"{voice}?agent=desk&transport=ws")
        await _until(page, "p.agent === 'desk'", 10, "loading the agent list")
        async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
            made_private = await http.patch(
                "/v1/agents/desk", json={"config": {"name": "desk", "public": False}}
            )
            assert made_private.status_code == 200, made_private.text
        await page.evaluate("document.getElementById('connect').click()")
        state = await _until(page, "!$('error').hidden", 10, "the refused start shown on the page")
        assert "no agent named 'desk'" in state["error"] and state["sessionId"] is None
        assert not [line for line in page.console if line.startswith("EXCEPTION")], page.console
