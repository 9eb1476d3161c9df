"""A live conversation over WebRTC (aiortc on both ends, host candidates on 127.0.0.1 only), in real time."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np

from parley.audio.frame import PCM16
from parley.providers.llm.scripted import ScriptRule
from parley.transports.webrtc_client import RtcClient
from tests.engine.harness import speech
from tests.server.conftest import fast_engines, serving
from tests.server.test_live_entry_points import make_offer
from tests.server.test_ws_session import LONG_ANSWER


class Heard:
    """Agent audio as it arrives: how much of it was more than silence."""

    def __init__(self) -> None:
        self.voiced_samples = 0
        self.last_voiced = 0.0

    def __call__(self, pcm: PCM16, arrival: float) -> None:
        if len(pcm) and np.abs(pcm.astype(np.int32)).max() > 300:
            self.voiced_samples += len(pcm)
            self.last_voiced = arrival


async def test_a_spoken_question_is_answered_over_webrtc() -> None:
    engines = fast_engines(
        ["What is the capital of France?"], [ScriptRule.say("capital", "Paris, of course.")]
    )
    heard = Heard()
    async with serving(engines) as served:
        client = await RtcClient.connect(served.base, on_audio=heard)
        started = client.of_type("session.started")[0]
        assert started["audio_out"]["encoding"] == "opus" and started["agent"] == "assistant"
        candidates = [line for line in client.pc.remoteDescription.sdp.splitlines() if "a=candidate" in line]
        assert candidates and all(" 127.0.0.1 " in c and " typ host" in c for c in candidates), candidates
        await client.say(speech(1.0).pcm)
        await client.wait_for("agent.audio", 10, status="stopped")
        final = await client.wait_for("transcript", 0, final=True)
        assert final["text"] == "What is the capital of France?"
        assert (await client.wait_for("agent.text", 0))["text"] == "Paris, of course."
        await asyncio.sleep(0.3)  # the last frames are still on the wire
        assert heard.voiced_samples > 8000, "the agent's answer arrived as audio"
        states = [m["state"] for m in client.of_type("state")]
        assert states[:4] == ["listening", "processing", "speaking", "listening"]
        assert any(m.get("voice_to_voice_ms") for m in client.of_type("metrics"))
        mark = len(client.messages)
        await client.send({"type": "ping", "id": 7})
        pong = await client.wait_for("pong", 5, since=mark, id=7)
        assert pong["idle"] is True
        await client.send({"type": "end"})
        assert (await client.wait_for("session.ended", 5))["reason"] == "client_ended"
        await client.wait_closed(5)
        await client.close()
        for _ in range(50):
            if not len(served.runtime.registry) and not served.runtime.connections:
                break
            await asyncio.sleep(0.05)
        assert len(served.runtime.registry) == 0 and not served.runtime.connections


async def test_interrupt_over_the_data_channel_stops_the_agent_audio() -> None:
    heard = Heard()
    async with serving(fast_engines([], [ScriptRule.say("Paris", LONG_ANSWER)])) as served:
        client = await RtcClient.connect(served.base, on_audio=heard)
        await client.send({"type": "text", "text": "Tell me about Paris."})
        await client.wait_for("agent.audio", 5, status="started")
        await asyncio.sleep(0.5)
        await client.send({"type": "interrupt"})
        cancelled = await client.wait_for("agent.cancelled", 5)
        assert cancelled["reason"] == "interrupt"
        heard_text = cancelled["heard_text"]
        assert LONG_ANSWER.startswith(heard_text) and len(heard_text) < len(LONG_ANSWER)
        await client.wait_for("audio.clear", 2)
        await asyncio.sleep(0.4)
        assert heard.voiced_samples > 0
        assert cancelled["_arrival"] - heard.last_voiced > -0.3, "agent audio stops soon after the interrupt"
        mark = len(client.messages)
        await client.send({"type": "start"})
        assert (await client.wait_for("error", 2, since=mark))["code"] == "already_started"
        await client.close()


async def test_a_hang_up_ends_the_session_and_bad_offers_are_refused() -> None:
    async with serving(fast_engines([], [])) as served:
        client = await RtcClient.connect(served.base)
        assert len(served.runtime.registry) == 1
        await client.close()
        for _ in range(100):
            if not len(served.runtime.registry):
                break
            await asyncio.sleep(0.05)
        assert len(served.runtime.registry) == 0, "closing the peer connection ends the session"
        async with httpx.AsyncClient(base_url=served.base) as http:
            unknown = await http.post(
                "/v1/sessions/webrtc", json={"sdp": await make_offer(), "type": "offer", "agent": "nobody"}
            )
            assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_agent"
            garbage = await http.post("/v1/sessions/webrtc", json={"sdp": "not sdp", "type": "offer"})
            assert garbage.status_code == 400 and garbage.json()["code"] == "invalid_message"
        for _ in range(50):
            if not len(served.runtime.registry):
                break
            await asyncio.sleep(0.05)
        assert len(served.runtime.registry) == 0, "a refused offer leaves no session behind"
