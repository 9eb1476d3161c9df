"""Threat: a page Parley serves runs JavaScript fetched from a third party.

FastAPI's ``/docs`` loaded Swagger UI from a CDN into the server's own origin: whoever controls that
CDN (or the network path to it) could act in the operator's browser with the operator's access, every
visit told the CDN where a Parley server runs, and offline the page stayed blank. Swagger UI's files
now come from Parley itself, and ReDoc (CDN only) is gone.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from parley.audio.wav import write_wav
from parley.server.app import create_platform_app
from parley.server.stacks import AgentCatalog
from tests.engine.harness import agent
from tests.server.conftest import fast_engines, serving, settings
from tests.web.browser import chromium, chromium_path

ORIGIN = "http://parley.test"


@pytest.fixture
async def http(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The full server's app (no lifespan: the docs need neither the store nor the models)."""
    app = create_platform_app(settings(data_dir=tmp_path), catalog=AgentCatalog([agent(name="assistant")]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield client


def referenced(html: str) -> list[str]:
    """Every URL the page loads: src and href attributes, and the spec's ``url:``."""
    found = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    found += re.findall(r"""\burl\s*:\s*["']([^"']+)["']""", html)
    return found


async def test_docs_reference_nothing_outside_the_server(http: httpx.AsyncClient) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert re.findall(r"(?:https?:)?//[\w.-]+", page.text) == [], "no absolute or protocol-relative URL"
    urls = referenced(page.text)
    assert any(url.endswith(".js") for url in urls) and any(url.endswith(".css") for url in urls)
    for url in urls:
        assert url.startswith("/"), url
        asset = await http.get(url)
        assert asset.status_code == 200, url
        assert len(asset.content) > 0, url
    spec = await http.get("/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "Parley"


async def test_no_cdn_backed_redoc_page(http: httpx.AsyncClient) -> None:
    assert (await http.get("/redoc")).status_code == 404


@pytest.mark.skipif(chromium_path() is None, reason="chromium is missing: run scripts/install_browser.sh")
async def test_swagger_ui_renders_in_a_browser_from_the_server_alone(tmp_path: Path) -> None:
    silence = tmp_path / "silence.wav"
    write_wav(silence, np.zeros(1600, np.int16), 16000)  # the browser helper wants a microphone
    async with serving(fast_engines([], [])) as served, chromium(silence) as page:
        await page.send("Page.navigate", url=f"{served.base}/docs")
        title = None
        for _ in range(200):
            title = await page.evaluate(
                "document.querySelector('.swagger-ui .info .title')?.textContent ?? null"
            )
            if title:
                break
            await asyncio.sleep(0.05)
        if title is None:  # e.g. a Swagger UI too old for FastAPI's OpenAPI 3.1 says so on the page
            shown = await page.evaluate("document.querySelector('#swagger-ui')?.innerText ?? ''")
            pytest.fail(f"Swagger UI rendered no API: {shown[:300]!r} {page.console}")
        assert "Parley" in title
        operations = await page.evaluate("document.querySelectorAll('.opblock').length")
        assert operations > 0, "the operations are listed"
        loaded = await page.evaluate("performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded, "the page loaded its script, style and spec"
        outside = [url for url in loaded if not url.startswith(served.base + "/")]
        assert outside == []
