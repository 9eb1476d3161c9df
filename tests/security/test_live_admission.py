"""Threat: strangers open live sessions, exhaust the server's slots, or run calls on someone's bill.

A live session needs a right to exist: a single-use, short-lived token minted by the REST API, or an
agent its operator marked public. Browsers from other sites are refused; one address cannot hold every
slot; a session that never gets going gives its slot back within seconds; anonymous sessions are on the
books, marked as such.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from parley.providers.llm.scripted import ScriptRule
from parley.transports.ws_client import LiveClient
from tests.engine.harness import agent, speech
from tests.server.conftest import Served, fast_engines, serving, talking

KEY = "pk_admission-test-key"
HEADERS = {"Authorization": f"Bearer {KEY}"}


async def client_from(served: Served, address: str = "127.0.0.1", **headers: str) -> LiveClient:
    """A WebSocket client from a chosen loopback address (127.0.0.0/8 is all this machine's)."""
    origin = headers.pop("origin", None)
    ws = await connect(
        served.ws,
        origin=origin,  # type: ignore[arg-type]
        additional_headers=headers or None,
        local_addr=(address, 0),
        compression=None,
        open_timeout=10,
        ping_interval=None,
    )
    return LiveClient(ws)


async def mint(served: Served, **config: Any) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
        made = await http.post("/v1/agents", json={"name": "desk", "config": {"name": "desk", **config}})
        assert made.status_code == 201, made.text
        web = await http.post(f"/v1/agents/{made.json()['id']}/sessions")
        assert web.status_code == 201, web.text
        return dict(web.json())


async def test_an_agent_that_is_not_public_needs_a_token() -> None:
    private = agent(name="private", public=False)
    async with serving(fast_engines([], []), agents=[agent(name="assistant"), private]) as served:
        client = await served.client()
        refused = await client.start("private")
        assert refused["type"] == "error" and refused["code"] == "unauthorized"
        assert "public: true" in refused["message"], "the operator's own agent: its file decides"
        assert len(served.runtime.registry) == 0


async def test_a_session_id_is_no_credential(tmp_path: Path) -> None:
    async with serving(fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY) as served:
        web = await mint(served)
        client = await served.client()
        await client.send({"type": "start", "call": web["session_id"]})
        refused = await client.wait_for("error", 5)
        assert refused["code"] == "unauthorized" and "token" in refused["message"]


async def test_a_token_opens_its_call_once(tmp_path: Path) -> None:
    engines = fast_engines(["Hello?"], [ScriptRule.say("hello", "Hi there.")])
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY) as served:
        web = await mint(served)
        assert web["token"] and web["expires_at"]
        first, second = await served.client(), await served.client()
        results = await asyncio.gather(first.start(token=web["token"]), second.start(token=web["token"]))
        kinds = sorted(r["type"] for r in results)
        assert kinds == ["error", "session.started"], "two clients racing with one token: one wins"
        assert next(r for r in results if r["type"] == "error")["code"] == "unauthorized"


async def test_an_expired_token_is_refused(tmp_path: Path) -> None:
    async with serving(
        fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY, session_token_ttl_s=0.2
    ) as served:
        web = await mint(served)
        await asyncio.sleep(0.5)
        refused = await (await served.client()).start(token=web["token"])
        assert refused["code"] == "unauthorized" and "expired" in refused["message"]


async def test_pages_of_other_sites_cannot_open_sessions() -> None:
    async with serving(fast_engines([], []), allowed_origins=["https://app.example.com"]) as served:
        with pytest.raises(InvalidStatus) as refused:
            await client_from(served, origin="https://evil.example")
        assert refused.value.response.status_code == 403
        host = served.base.removeprefix("http://")
        for origin in (f"http://{host}", "https://app.example.com"):
            client = await client_from(served, origin=origin)
            assert (await client.start())["type"] == "session.started"
        async with httpx.AsyncClient(base_url=served.base) as http:
            offer = await http.post(
                "/v1/sessions/webrtc",
                json={"sdp": "v=0", "type": "offer"},
                headers={"Origin": "https://evil.example"},
            )
        assert offer.status_code == 403 and offer.json()["code"] == "forbidden_origin"


async def test_one_address_cannot_take_every_slot() -> None:
    async with serving(
        fast_engines([], []), max_concurrent_sessions=10, max_sessions_per_ip=2, max_connections_per_ip=3
    ) as served:
        mine = [await client_from(served, "127.0.0.2") for _ in range(3)]
        assert [(await c.start())["type"] for c in mine[:2]] == ["session.started"] * 2
        capped = await mine[2].start()
        assert capped["code"] == "rate_limited" and "live sessions from your address" in capped["message"]
        fourth = await client_from(served, "127.0.0.2")  # a fourth connection from that address
        await fourth.wait_closed(5)
        assert fourth.ws.close_code == 1013 and "limit 3" in (fourth.ws.close_reason or "")
        other = await client_from(served, "127.0.0.3")
        assert (await other.start())["type"] == "session.started", "other addresses still get in"


async def test_a_session_that_never_gets_going_frees_its_slot() -> None:
    async with serving(fast_engines([], []), session_start_timeout_s=0.5) as served:
        idle = await served.client()
        assert (await idle.start())["type"] == "session.started"
        ended = await idle.wait_for("session.ended", 5)
        assert ended["reason"] == "no_input"
        assert len(served.runtime.registry) == 0

        speaking = await served.client()
        await speaking.start()
        async with talking(speaking) as mic:
            await mic.say(speech(0.2).pcm)
            await asyncio.sleep(1.0)
        assert len(served.runtime.registry) == 1, "a session with audio is in use"


async def test_a_webrtc_offer_that_never_connects_frees_its_slot() -> None:
    async with serving(fast_engines([], []), session_start_timeout_s=0.5) as served:
        pc = RTCPeerConnection()
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(base_url=served.base) as http:
            answer = await http.post(
                "/v1/sessions/webrtc", json={"sdp": pc.localDescription.sdp, "type": "offer"}
            )
        assert answer.status_code == 200, answer.text
        await pc.close()  # the client goes away before ICE completes
        for _ in range(50):
            if not len(served.runtime.registry):
                break
            await asyncio.sleep(0.1)
        assert len(served.runtime.registry) == 0
        assert served.runtime.caps.sessions("127.0.0.1") == 0


async def test_anonymous_sessions_are_on_the_books_marked_public(tmp_path: Path) -> None:
    engines = fast_engines(["Hello?"], [ScriptRule.say("hello", "Hi there.")])
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY) as served:
        client = await client_from(served, "127.0.0.5")
        await client.start()
        await client.send({"type": "end"})
        await client.wait_closed()
        web = await mint(served)
        tokened = await served.client()
        await tokened.start(token=web["token"])
        await tokened.send({"type": "end"})
        await tokened.wait_closed()
        async with httpx.AsyncClient(base_url=served.base, headers=HEADERS) as http:
            for _ in range(50):
                calls = (await http.get("/v1/calls")).json()["data"]
                if len(calls) == 2 and all(c["status"] != "queued" for c in calls):
                    break
                await asyncio.sleep(0.1)
        access = {c["access"]: c for c in calls}
        assert access["public"]["client_ip"] == "127.0.0.5"
        assert access["public"]["org_id"] == access["token"]["org_id"], "the operator's org, visibly"
        assert access["token"]["transport"] == "websocket"
