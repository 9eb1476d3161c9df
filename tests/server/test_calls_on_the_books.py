"""The real server with its store: a conversation over the WebSocket becomes a call on the books,
visible through the REST API (transcript, events, recording, costs)."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
import soundfile as sf

from parley.providers.llm.scripted import ScriptRule
from tests.engine.harness import speech
from tests.server.conftest import fast_engines, say_until, serving, talking

KEY = "pk_wiring-test-key"


async def test_a_websocket_conversation_is_stored_as_a_call(tmp_path: Path) -> None:
    engines = fast_engines(
        ["What is the capital of France?"], [ScriptRule.say("capital", "Paris, of course.")]
    )
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY) as served:
        client, _ = await say_until(served, "stopped")
        await client.send({"type": "end"})
        await client.wait_closed()
        async with served.api(KEY) as http:
            for _ in range(100):  # the persister finishes the call just after hang-up
                calls = (await http.get("/v1/calls", params={"status": "completed"})).json()["data"]
                if calls:
                    break
                await asyncio.sleep(0.1)
            assert len(calls) == 1 and calls[0]["transport"] == "websocket"
            detail = (await http.get(f"/v1/calls/{calls[0]['id']}")).json()
            said = [(t["speaker"], t["text"]) for t in detail["transcript"]]
            assert said == [("user", "What is the capital of France?"), ("agent", "Paris, of course.")]
            assert any(e["type"] == "agent.audio.started" for e in detail["events"])
            for _ in range(50):  # usage is priced and the recording stored when the call ends
                if detail["costs"] and not detail["costs"]["provisional"] and detail["recording"]:
                    break
                await asyncio.sleep(0.1)
                detail = (await http.get(f"/v1/calls/{calls[0]['id']}")).json()
            assert detail["costs"]["currency"] == "INR" and not detail["costs"]["provisional"]
            assert detail["recording"]["status"] == "ready"
            wav = await http.get(detail["recording"]["url"])
            audio, rate = sf.read(io.BytesIO(wav.content), dtype="int16")
            assert audio.ndim == 2 and audio.shape[1] == 2 and len(audio) / rate > 1.0
            assert audio[:, 0].any() and audio[:, 1].any(), (
                "both the caller and the agent are on the recording"
            )


async def test_a_call_created_through_the_api_is_run_by_the_websocket(tmp_path: Path) -> None:
    rules = [ScriptRule.say("hours", "We open at nine.")]
    engines = fast_engines(["What are your hours?"], rules)
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY) as served:
        async with served.api(KEY) as http:
            made = await http.post(
                "/v1/agents", json={"name": "front-desk", "config": {"name": "front-desk"}}
            )
            assert made.status_code == 201, made.text
            web = (await http.post(f"/v1/agents/{made.json()['id']}/sessions")).json()
        client = await served.client()
        started = await client.start(token=web["token"])
        assert started["type"] == "session.started", started
        async with talking(client) as mic:
            await mic.say(speech(1.0).pcm)
            await client.wait_for("agent.audio", 10, status="stopped")
        await client.send({"type": "end"})
        await client.wait_closed()

        again = await served.client()
        refused = await again.start(token=web["token"])
        assert refused["type"] == "error" and refused["code"] == "unauthorized"
        assert "already used" in refused["message"]
        async with served.api(KEY) as http:
            detail = (await http.get(f"/v1/calls/{web['call_id']}")).json()
        assert detail["agent_id"] == made.json()["id"]
        assert [t["text"] for t in detail["transcript"]] == ["What are your hours?", "We open at nine."]


async def test_a_worker_that_cannot_reach_its_database_is_not_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load balancer must stop sending calls to it: they could not be put on the books."""
    async with serving(fast_engines([], []), platform=True, data_dir=tmp_path, api_key=KEY) as served:
        assert (await served.get("/readyz")).json()["status"] == "ready"
        platform = served.runtime.platform
        assert platform is not None

        async def refused() -> None:
            raise ConnectionRefusedError(111, "Connect call failed")

        monkeypatch.setattr(platform.db, "ping", refused)
        down = await served.get("/readyz")
        assert down.status_code == 503
        assert down.json() == {"status": "degraded", "error": "database: ConnectionRefusedError"}


async def test_a_recording_link_names_the_public_url_behind_a_proxy(tmp_path: Path) -> None:
    """The request reached the worker by an internal host; the link is for whoever reads the call."""
    engines = fast_engines(["Hello there."], [ScriptRule.say("Hello", "Hi!")])
    public = "https://voice.example.com"
    async with serving(engines, platform=True, data_dir=tmp_path, api_key=KEY, public_url=public) as served:
        client, _ = await say_until(served, "stopped")
        await client.send({"type": "end"})
        await client.wait_closed()
        async with served.api(KEY) as http:
            recording = None
            for _ in range(150):
                calls = (await http.get("/v1/calls", params={"status": "completed"})).json()["data"]
                if calls:
                    recording = (await http.get(f"/v1/calls/{calls[0]['id']}")).json()["recording"]
                    if recording and recording["status"] == "ready":
                        break
                await asyncio.sleep(0.1)
            assert recording is not None and recording["status"] == "ready"
            url = recording["url"]
            assert url == f"{public}/v1/calls/{calls[0]['id']}/recording"
            wav = await http.get(url.removeprefix(public))
            assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
