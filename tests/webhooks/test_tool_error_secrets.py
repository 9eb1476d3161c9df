"""A webhook tool's error quotes the service's answer, cut short: never a secret, nor the start of one,
however the cut falls (the error reaches the model, the timeline and the ``tool.called`` webhook)."""

from __future__ import annotations

import pytest

from parley.redaction import REDACTED, excerpt
from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.test_webhook_tool import SECRETS, call, registry, tool_settings

TOKEN = "k3y-ABCDEFGHIJKLMNOP"  # 20 characters, the value of the header secret ``booking_token``


@pytest.mark.parametrize("dots", [150, 158, 170, 175, 178])
async def test_a_secret_the_cut_falls_in_never_shows_its_first_characters(dots: int) -> None:
    """158 dots cut the echoed key after 16 of its 20 characters; the others cut the redacted key (or
    what follows it) elsewhere."""
    body = f"invalid credentials: {'.' * dots} key {TOKEN}".encode()
    echo = Receiver(statuses=[403], reply=body)
    async with receiving(echo):
        ok, content = await call(
            registry(tool_settings(echo.url), secrets={**SECRETS, "booking_token": TOKEN}), day="monday"
        )
    assert not ok and "HTTP 403: invalid credentials: ..." in content
    assert "k3y" not in content and "ABCD" not in content
    assert not content.rstrip().endswith(("[", "[s", "[se", "[sec", "[secr", "[secre", "[secret")), content


async def test_a_service_that_cut_the_secret_itself_shows_none_of_it() -> None:
    echo = Receiver(statuses=[401], reply=f"refused header value {TOKEN[:9]}".encode())
    async with receiving(echo):
        ok, content = await call(
            registry(tool_settings(echo.url), secrets={**SECRETS, "booking_token": TOKEN}), day="monday"
        )
    assert not ok and content.endswith("HTTP 401: refused header value") and "k3y" not in content


def test_an_excerpt_redacts_before_it_cuts() -> None:
    secret = "s3cret-value-0123456789"
    text = "x" * 90 + secret + " and more"
    for limit in range(85, 120):
        shown = excerpt(text, limit, [secret])
        assert len(shown) <= limit and "s3cr" not in shown, (limit, shown)
        assert shown.startswith("x" * min(limit, 85))
    assert excerpt(text, 200, [secret]) == "x" * 90 + REDACTED + " and more"
    assert excerpt("the key s3cr", 200, [secret]) == "the key ", "a secret's start at the end goes"
    assert excerpt("the key s3c", 200, [secret]) == "the key s3c", "three characters are no secret"
    assert excerpt("short words", 5) == "short"
    assert excerpt("Bearer abcdefghijklmnop tail", 10) == "Bearer ", "a halved [secret] goes whole"
