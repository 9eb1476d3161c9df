"""``/v1/webhooks``: endpoints with a secret shown once, refused URLs, the delivery log, retries."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from parley.config import Settings
from parley.platform.runtime import Platform
from parley.store.webhooks import enqueue_event
from parley.webhooks.dispatcher import WebhookDispatcher
from parley.webhooks.signing import verify
from tests.api.conftest import BOOT_KEY, make_app
from tests.webhooks.receiver import Receiver, receiving


@pytest.fixture
async def platform(db_url: str, tmp_path: Path) -> AsyncIterator[Platform]:
    opened = await Platform.open(
        Settings(
            data_dir=tmp_path,
            database_url=db_url,
            api_key=BOOT_KEY,
            webhook_allow_private_hosts=["127.0.0.1"],
        )
    )
    yield opened
    await opened.close()


async def test_endpoints_are_managed_and_their_secret_is_shown_once(client: httpx.AsyncClient) -> None:
    made = await client.post(
        "/v1/webhooks",
        json={
            "url": "https://hooks.example.com/parley",
            "events": ["call.ended", "call.ended", "tool.called"],
        },
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["secret"].startswith("whsec_") and endpoint["events"] == ["call.ended", "tool.called"]
    shown = (await client.get(f"/v1/webhooks/{endpoint['id']}")).json()
    assert "secret" not in shown and shown["enabled"] is True
    assert [e["id"] for e in (await client.get("/v1/webhooks")).json()] == [endpoint["id"]]

    patched = await client.patch(
        f"/v1/webhooks/{endpoint['id']}", json={"enabled": False, "events": ["call.started"]}
    )
    assert patched.json()["enabled"] is False and patched.json()["events"] == ["call.started"]
    rotated = (await client.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret")).json()
    assert rotated["secret"] != endpoint["secret"]

    assert (await client.delete(f"/v1/webhooks/{endpoint['id']}")).status_code == 204
    assert (await client.get(f"/v1/webhooks/{endpoint['id']}")).status_code == 404
    assert (await client.delete(f"/v1/webhooks/{endpoint['id']}")).status_code == 404


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"url": "http://hooks.example.com/", "events": ["call.ended"]}, 422),  # http: not allowed here
        ({"url": "https://10.0.0.5/", "events": ["call.ended"]}, 422),
        ({"url": "https://169.254.169.254/latest", "events": ["call.ended"]}, 422),
        ({"url": "https://example.com/x\r\nHost: evil", "events": ["call.ended"]}, 422),  # httpx refuses it
        ({"url": "https://xn--/", "events": ["call.ended"]}, 422),  # so does IDNA
        ({"url": "https://127.1/", "events": ["call.ended"]}, 422),  # loopback, in shorthand
        ({"url": "https://0x7f000001/", "events": ["call.ended"]}, 422),
        ({"url": "https://[64:ff9b::a9fe:a9fe]/", "events": ["call.ended"]}, 422),  # NAT64 of metadata
        ({"url": "https://hooks.example.com/", "events": ["call.exploded"]}, 422),
        ({"url": "https://hooks.example.com/", "events": []}, 422),
        ({"url": "https://hooks.example.com/", "events": ["call.ended"], "secret": "mine"}, 422),
    ],
)
async def test_urls_and_events_the_server_refuses(
    client: httpx.AsyncClient, body: dict[str, object], status: int
) -> None:
    response = await client.post("/v1/webhooks", json=body)
    assert response.status_code == status, response.text


async def test_a_changed_url_is_checked_like_a_new_one(client: httpx.AsyncClient) -> None:
    made = (
        await client.post(
            "/v1/webhooks", json={"url": "https://hooks.example.com/", "events": ["call.ended"]}
        )
    ).json()
    for url in ("https://hooks.example.com/\r\nX: y", "https://2130706433/", "https://[2002:a00:1::]/"):
        changed = await client.patch(f"/v1/webhooks/{made['id']}", json={"url": url})
        assert changed.status_code == 422, changed.text
    assert (await client.get(f"/v1/webhooks/{made['id']}")).json()["url"] == "https://hooks.example.com/"


async def test_the_delivery_log_shows_every_attempt_and_a_delivery_can_be_retried(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    receiver = Receiver(statuses=[500])
    async with receiving(receiver):
        # The operator allows the local receiver (over http) for this test only.
        platform.settings.webhook_allow_http = True
        endpoint = (
            await client.post("/v1/webhooks", json={"url": receiver.url + "/in", "events": ["call.analyzed"]})
        ).json()
        async with platform.db.session() as session:
            await enqueue_event(
                session, platform.default_org_id, "call.analyzed", {"summary": "ok"}, "c:analyzed"
            )
        dispatcher = WebhookDispatcher(platform.db, platform.secrets, platform.settings)
        try:
            assert await dispatcher.step() == 1
            (pending,) = (await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries")).json()["data"]
            assert pending["status"] == "pending" and pending["event_type"] == "call.analyzed"
            assert [(a["attempt"], a["status_code"]) for a in pending["log"]] == [(1, 500)]
            assert pending["payload"] == {"summary": "ok"}
            retried = await client.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{pending['id']}/retry")
            assert retried.status_code == 200 and retried.json()["status"] == "pending"
            assert await dispatcher.step() == 1
        finally:
            await dispatcher.close()
    page = (
        await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", params={"status": "delivered"})
    ).json()
    (delivered,) = page["data"]
    assert [a["status_code"] for a in delivered["log"]] == [500, 200] and page["next_cursor"] is None
    verify(endpoint["secret"], receiver.received[-1].headers["parley-signature"], receiver.received[-1].body)
    missing = await client.post(f"/v1/webhooks/{endpoint['id']}/deliveries/whd_nope/retry")
    assert missing.status_code == 404
    assert (
        await client.get(f"/v1/webhooks/{endpoint['id']}/deliveries", params={"status": "lost"})
    ).status_code == 422


async def test_the_tool_signing_secret_is_generated_into_the_organization_secrets(
    client: httpx.AsyncClient,
) -> None:
    made = (await client.post("/v1/webhooks/signing-secret")).json()
    assert made["name"] == "webhook_signing_secret" and made["secret"].startswith("whsec_")
    names = [s["name"] for s in (await client.get("/v1/secrets")).json()]
    assert names == ["webhook_signing_secret"]


async def test_the_api_needs_a_key(platform: Platform) -> None:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=make_app(platform)), base_url="http://t"
    ) as c:
        assert (await c.get("/v1/webhooks")).status_code == 401
