"""A webhook URL holding an invisible or reordering character is refused: a right-to-left override or a
zero-width space makes the URL read, in a listing or the CLI, as one it is not."""

from __future__ import annotations

import re

import httpx
import pytest

from parley.webhooks.guard import UrlPolicy, UrlRefused
from tests.api.conftest import platform  # noqa: F401  (the fixture ``client`` runs the API on)

UNSEEN = [
    ("\u202e", "U+202E"),  # RIGHT-TO-LEFT OVERRIDE (Cf)
    ("\u2066", "U+2066"),  # LEFT-TO-RIGHT ISOLATE (Cf)
    ("\u200b", "U+200B"),  # ZERO WIDTH SPACE (Cf)
    ("\u200d", "U+200D"),  # ZERO WIDTH JOINER (Cf)
    ("\ufeff", "U+FEFF"),  # ZERO WIDTH NO-BREAK SPACE, the byte order mark (Cf)
    ("\u00ad", "U+00AD"),  # SOFT HYPHEN (Cf)
    ("\u2028", "U+2028"),  # LINE SEPARATOR (Zl)
    ("\u2029", "U+2029"),  # PARAGRAPH SEPARATOR (Zp)
]
"""Control characters (Cc) are refused with the other fields' text checks, before the URL's own."""


@pytest.mark.parametrize(("char", "code"), UNSEEN)
async def test_an_endpoint_url_with_an_invisible_character_is_refused(
    client: httpx.AsyncClient, char: str, code: str
) -> None:
    url = f"https://example.com/{char}gpj.exe"
    refused = await client.post("/v1/webhooks", json={"url": url, "events": ["call.ended"]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("url: the URL holds") and code in refused.json()["detail"]
    assert (await client.get("/v1/webhooks")).json() == []

    made = await client.post(
        "/v1/webhooks", json={"url": "https://example.com/hook", "events": ["call.ended"]}
    )
    assert made.status_code == 201, made.text
    changed = await client.patch(f"/v1/webhooks/{made.json()['id']}", json={"url": url})
    assert changed.status_code == 422 and code in changed.json()["detail"]
    shown = await client.get(f"/v1/webhooks/{made.json()['id']}")
    assert shown.json()["url"] == "https://example.com/hook"


async def test_a_webhook_tool_url_with_an_invisible_character_is_refused_when_its_agent_is_saved(
    client: httpx.AsyncClient,
) -> None:
    tool = {"name": "book", "description": "Book.", "kind": "webhook", "url": "https://example.com/\u202e"}
    refused = await client.post("/v1/agents", json={"name": "booker", "config": {"tools": [tool]}})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("tools.0.url: the URL holds") and "U+202E" in refused.text


@pytest.mark.parametrize(("char", "code"), UNSEEN)
def test_a_tool_url_with_an_invisible_character_is_refused_when_called(char: str, code: str) -> None:
    """What a webhook tool's URL is checked by at each call (an agent saved before this check existed)."""
    with pytest.raises(UrlRefused, match=re.escape(code)):
        UrlPolicy().check_url(f"https://example.com/{char}")


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/%E2%80%AE",  # the override percent-encoded: visible as what it is
        "https://exämple.com/caf\u00e9?q=\u05e9\u05dc\u05d5\u05dd",  # letters of any script are fine
    ],
)
def test_urls_with_visible_characters_still_pass(url: str) -> None:
    assert UrlPolicy().check_url(url) == url
