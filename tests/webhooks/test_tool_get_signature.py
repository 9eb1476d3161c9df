"""A GET webhook tool signs its query string exactly as it reaches the service, whatever the configured
URL left for the HTTP client to percent-encode: a receiver verifying as docs/webhooks.md says accepts it."""

from __future__ import annotations

import hmac

import pytest

from tests.webhooks.receiver import Receiver, receiving
from tests.webhooks.test_webhook_tool import SIGNING, call, registry, tool_settings


def verified_as_documented(secret: str, header: str, signed: bytes) -> bool:
    """docs/webhooks.md, without Parley installed: HMAC-SHA256 of ``"<t>.<body>"``, hex, compared in
    constant time; for a GET the body is the query string as received."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + signed, "sha256").hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


@pytest.mark.parametrize(
    ("query", "arrives"),
    [
        ("city=München", "city=M%C3%BCnchen"),
        ('filter="open"', "filter=%22open%22"),
        ("name=Zoë&note=<b>", "name=Zo%C3%AB&note=%3Cb%3E"),
        ("shop=1", "shop=1"),
    ],
)
async def test_a_receiver_verifies_a_get_whose_url_the_client_encoded(query: str, arrives: str) -> None:
    receiver = Receiver(reply=b'{"open": true}')
    async with receiving(receiver):
        ok, content = await call(
            registry(tool_settings(f"{receiver.url}/hours?{query}", method="GET")), day="sunday später"
        )
    assert ok, content
    (request,) = receiver.received
    assert request.query == f"{arrives}&day=sunday+sp%C3%A4ter&call_id=call_42"
    assert verified_as_documented(SIGNING, request.headers["parley-signature"], request.query.encode())
