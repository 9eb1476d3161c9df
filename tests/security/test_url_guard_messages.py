"""Threat: a tenant maps the operator's network through the URL guard's own words, or probes ports from
the operator's address.

- An endpoint URL with a host name is accepted when saved (names are judged when dialed). Its refusal
  used to read "localhost resolves to 127.0.0.1, which is not a public address" in the delivery log, and
  the same in a webhook tool's error (the model, the timeline, ``tool.called`` webhooks): with names
  like ``metadata.google.internal`` a tenant reads the operator's DNS. A tenant now reads only that the
  host does not resolve to a permitted address, the same for a name that does not resolve at all.
- Any port was accepted (``https://1.1.1.1:22/`` → 201): now 443 and 80 only, plus what the operator
  adds (``PARLEY_WEBHOOK_ALLOW_PORTS``), refused with a 422 naming the field when an endpoint or a webhook
  tool is saved.
- A refused port read "could not connect (…refused…)" and a filtered one "timed out": a port scan. Both
  now read "could not connect".
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from parley.config import Settings
from parley.engine.agent import ToolSettings
from parley.engine.tools import CallContext, ToolRegistry
from parley.platform.runtime import Platform
from parley.providers.llm.base import ToolCall
from parley.store.webhooks import enqueue_event
from parley.webhooks.dispatcher import WebhookDispatcher
from parley.webhooks.guard import UrlPolicy
from parley.webhooks.tool import SIGNING_SECRET, WebhookContext, webhook_tool
from tests.api.conftest import BOOT_KEY

LOOPBACK = ("127.0.0.1", "::1", "resolves to")
PERMITTED = "does not resolve to a permitted address"


@pytest.fixture
async def platform(db_url: str, tmp_path: Path) -> AsyncIterator[Platform]:
    opened = await Platform.open(
        Settings(_env_file=None, data_dir=tmp_path, database_url=db_url, api_key=BOOT_KEY)
    )
    yield opened
    await opened.close()


async def delivery_errors(client: httpx.AsyncClient, platform: Platform, url: str) -> list[str]:
    """What the organization reads in the delivery log of an endpoint at ``url`` after a call ended."""
    made = await client.post("/v1/webhooks", json={"url": url, "events": ["call.ended"]})
    assert made.status_code == 201, made.text  # a name is judged when dialed
    endpoint_id = made.json()["id"]
    async with platform.db.session() as session:
        await enqueue_event(session, platform.default_org_id, "call.ended", {"call_id": "c1"}, f"c1:{url}")
    dispatcher = WebhookDispatcher(platform.db, platform.secrets, platform.settings)
    try:
        assert await dispatcher.step() >= 1
    finally:
        await dispatcher.close()
    (delivery,) = (await client.get(f"/v1/webhooks/{endpoint_id}/deliveries")).json()["data"]
    return [delivery["last_error"], *(attempt["error"] for attempt in delivery["log"])]


async def test_the_delivery_log_names_no_address_the_operators_resolver_answered(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    for error in await delivery_errors(client, platform, "https://localhost/"):
        assert PERMITTED in error, error
        assert not any(word in error for word in LOOPBACK), error
    unresolvable = await delivery_errors(client, platform, "https://no-such-host.invalid/")
    localhost = await delivery_errors(client, platform, "https://localhost/hook")
    assert unresolvable == localhost, "a name that does not resolve reads like one that resolves inside"


@pytest.mark.parametrize(
    "url", ["https://1.1.1.1:22/", "https://hooks.example.com:5432/in", "http://hooks.example.com:8080/"]
)
async def test_an_endpoint_on_another_port_is_refused_when_saved(
    client: httpx.AsyncClient, platform: Platform, url: str
) -> None:
    platform.settings.webhook_allow_http = True
    refused = await client.post("/v1/webhooks", json={"url": url, "events": ["call.ended"]})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("url: port ") and "not permitted" in refused.json()["detail"]
    made = await client.post(
        "/v1/webhooks", json={"url": "https://hooks.example.com/", "events": ["call.ended"]}
    )
    assert made.status_code == 201, made.text
    changed = await client.patch(f"/v1/webhooks/{made.json()['id']}", json={"url": url})
    assert changed.status_code == 422 and changed.json()["detail"].startswith("url: port ")


async def test_the_operator_may_allow_more_ports(client: httpx.AsyncClient, platform: Platform) -> None:
    platform.settings.webhook_allow_ports = [8443]
    url = "https://hooks.example.com:8443/in"
    made = await client.post("/v1/webhooks", json={"url": url, "events": ["call.ended"]})
    assert made.status_code == 201, made.text
    for port_of_the_web in ("https://hooks.example.com:443/", "https://hooks.example.com/"):
        made = await client.post("/v1/webhooks", json={"url": port_of_the_web, "events": ["call.ended"]})
        assert made.status_code == 201, made.text


def webhook_agent(url: str) -> dict[str, object]:
    tool = {"name": "book", "description": "Book.", "kind": "webhook", "url": url}
    return {"name": "booker", "config": {"tools": [tool]}}


async def test_a_webhook_tool_on_another_port_is_refused_when_its_agent_is_saved(
    client: httpx.AsyncClient,
) -> None:
    refused = await client.post("/v1/agents", json=webhook_agent("https://1.1.1.1:22/book"))
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("tools.0.url: port 22 is not permitted")
    made = await client.post("/v1/agents", json=webhook_agent("https://api.example.com/book"))
    assert made.status_code == 201, made.text
    tool = {"name": "book", "description": "Book.", "kind": "webhook", "url": "https://api.example.com:6379/"}
    patched = await client.patch(f"/v1/agents/{made.json()['id']}", json={"config": {"tools": [tool]}})
    assert patched.status_code == 422 and patched.json()["detail"].startswith("tools.0.url: port 6379")


async def what_the_model_hears(url: str, policy: UrlPolicy, timeout_s: float = 3.0) -> str:
    settings = ToolSettings(name="book", description="Book.", kind="webhook", url=url, timeout_s=timeout_s)
    tools = ToolRegistry()
    context = WebhookContext(policy, {SIGNING_SECRET: "whsec_x"}, call=CallContext(call_id="call_1"))
    tools.register(webhook_tool(settings, context))
    outcome = await tools.execute(ToolCall("c1", "book", {}))
    assert not outcome.ok
    return outcome.content


async def test_a_webhook_tool_error_names_no_resolved_address() -> None:
    heard = await what_the_model_hears("https://localhost/book", UrlPolicy())
    assert PERMITTED in heard and not any(word in heard for word in LOOPBACK), heard
    assert heard == await what_the_model_hears("https://no-such-host.invalid/book", UrlPolicy())
    port = await what_the_model_hears("https://1.1.1.1:22/", UrlPolicy())
    assert "port 22 is not permitted" in port, port


@pytest.fixture
def ports() -> Iterator[tuple[int, int]]:
    """A closed port (refuses at once) and a full one (drops the handshake, like a firewall: a timeout)."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refusing = closed.getsockname()[1]
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    waiting = []
    for _ in range(4):  # fill the accept queue: further handshakes get no answer
        pending = socket.socket()
        pending.setblocking(False)
        pending.connect_ex(full.getsockname())
        waiting.append(pending)
    try:
        yield refusing, full.getsockname()[1]
    finally:
        for pending in waiting:
            pending.close()
        full.close()


async def test_a_refused_port_and_a_filtered_one_read_alike(ports: tuple[int, int]) -> None:
    refusing, filtered = ports
    await asyncio.sleep(0.1)
    inside = UrlPolicy(allow_http=True, allow_private_hosts=frozenset({"127.0.0.1"}))
    # The connect gives up at 0.8 of the tool's timeout: 3 s leaves that race a wide margin on a loaded CPU.
    refused = await what_the_model_hears(f"http://127.0.0.1:{refusing}/", inside, timeout_s=3.0)
    dropped = await what_the_model_hears(f"http://127.0.0.1:{filtered}/", inside, timeout_s=3.0)
    assert refused == dropped == "error: book failed: the service could not be reached: could not connect"
