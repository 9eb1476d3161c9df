"""Health, readiness, metrics, the voice page and the hook for other routers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
from fastapi import APIRouter, FastAPI
from prometheus_client.parser import text_string_to_metric_families

from parley.engine.agent import AgentConfig, ToolSettings
from parley.engine.session import EngineStack
from parley.providers.llm.scripted import ScriptRule
from parley.server.app import create_app
from parley.server.live import LiveSession
from parley.server.stacks import AgentCatalog
from tests.engine.harness import agent, speech
from tests.server.conftest import fast_engines, serving, settings, talking

LONG_ANSWER = "Paris is the capital of France, and it has many museums, parks, bridges and bakeries."


async def test_ready_only_once_the_models_are_warm() -> None:
    loaded = asyncio.Event()

    async def slow_factory(_: AgentConfig) -> EngineStack:
        await loaded.wait()
        return fast_engines([], [])

    app = create_app(settings(), catalog=AgentCatalog([agent(name="assistant")]), stack_factory=slow_factory)
    transport = httpx.ASGITransport(app=app)
    http_client = httpx.AsyncClient(transport=transport, base_url="http://t")
    async with app.router.lifespan_context(app), http_client as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"
        loading = await http.get("/readyz")
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        loaded.set()
        await asyncio.wait_for(app.state.runtime.engines.ready.wait(), 2)
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


async def test_a_model_that_fails_to_load_is_reported_by_readyz() -> None:
    async def broken(_: AgentConfig) -> EngineStack:
        raise FileNotFoundError("voice.onnx")

    app = create_app(settings(), catalog=AgentCatalog([agent(name="assistant")]), stack_factory=broken)
    transport = httpx.ASGITransport(app=app)
    http_client = httpx.AsyncClient(transport=transport, base_url="http://t")
    async with app.router.lifespan_context(app), http_client as http:
        await asyncio.sleep(0.05)
        failed = await http.get("/readyz")
        assert failed.status_code == 503 and "voice.onnx" in failed.json()["error"]


async def test_voice_page_config_and_extra_routers() -> None:
    extra = APIRouter()

    @extra.get("/v1/ping-extra")
    async def ping() -> dict[str, str]:
        return {"pong": "yes"}

    opened: list[str] = []

    @contextlib.asynccontextmanager
    async def store(app: FastAPI) -> AsyncIterator[None]:
        app.state.store = "open"
        opened.append("open")
        yield
        opened.append("closed")

    app = create_app(
        settings(),
        catalog=AgentCatalog([agent(name="assistant"), agent(name="concierge")]),
        stack_factory=lambda _: asyncio.sleep(0, fast_engines([], [])),
        extra_routers=[extra],
        extra_lifespans=[store],
    )
    transport = httpx.ASGITransport(app=app)
    http_client = httpx.AsyncClient(transport=transport, base_url="http://t")
    async with app.router.lifespan_context(app), http_client as http:
        assert app.state.store == "open"
        root = await http.get("/?autoconnect=1")
        assert root.status_code == 307 and root.headers["location"] == "/voice/?autoconnect=1"
        page = await http.get("/voice/")
        assert page.status_code == 200 and "app.js" in page.text
        for asset in ("app.js", "ws-transport.js", "webrtc-transport.js", "worklets.js", "style.css"):
            assert (await http.get(f"/voice/{asset}")).status_code == 200, asset
        # The page names its icon, so a browser does not log a 404 for /favicon.ico on every visit.
        assert 'rel="icon" href="favicon.svg"' in page.text
        icon = await http.get("/voice/favicon.svg")
        assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
        config = (await http.get("/v1/realtime/config")).json()
        assert config["transports"] == {"ws": "/v1/sessions/ws", "webrtc": "/v1/sessions/webrtc"}
        assert [a["name"] for a in config["agents"]] == ["assistant", "concierge"]
        assert (await http.get("/v1/ping-extra")).json() == {"pong": "yes"}
    assert opened == ["open", "closed"]


async def test_metrics_follow_the_timeline_and_parse_as_prometheus_text() -> None:
    lines = ["What is the time?", "Tell me about Paris.", "Stop, that is enough."]
    rules = [
        ScriptRule.call("time", "clock", {}),
        ScriptRule.after_tool("12:00", "It is noon."),
        ScriptRule.say("Paris", LONG_ANSWER),
        ScriptRule.say("enough", "Okay."),
    ]
    clock = ToolSettings(name="clock", kind="static", result={"time": "12:00"})
    hooked: list[LiveSession] = []
    async with serving(fast_engines(lines, rules), agents=[agent(name="assistant", tools=[clock])]) as served:
        served.runtime.session_hooks.append(hooked.append)
        client = await served.client()
        await client.start()
        await client.send('{"type": "nonsense"}')
        async with talking(client) as mic:
            await mic.say(speech(0.8).pcm)
            await client.wait_for("agent.text", 10, text="It is noon.")
            await client.wait_for("agent.audio", 10, status="stopped")
            mark = len(client.messages)
            await mic.say(speech(0.8).pcm)
            await client.wait_for("agent.audio", 10, since=mark, status="started")
            await asyncio.sleep(1.8)  # past the window in which a barge-in joins the previous turn
            await mic.say(speech(1.0).pcm)
            await client.wait_for("agent.text", 10, text="Okay.")
        live_text = (await served.get("/metrics")).text
        await client.send({"type": "end"})
        await client.wait_for("session.ended", 5)
        await asyncio.sleep(0.1)
        ended_text = (await served.get("/metrics")).text
    assert len(hooked) == 1, "session hooks see every new session"
    live = _samples(live_text)
    ended = _samples(ended_text)
    assert live[("parley_active_sessions", ())] == 1.0
    assert ended[("parley_active_sessions", ())] == 0.0
    assert ended[("parley_session_duration_seconds_count", ())] == 1.0
    assert ended[("parley_sessions_total", (("reason", "client_ended"),))] == 1.0
    assert ended[("parley_voice_to_voice_seconds_count", ())] >= 2.0
    assert ended[("parley_asr_latency_seconds_count", ())] >= 3.0
    assert ended[("parley_llm_first_token_seconds_count", ())] >= 3.0
    assert ended[("parley_tts_first_byte_seconds_count", ())] >= 2.0
    assert ended[("parley_barge_ins_total", ())] == 1.0
    assert ended[("parley_tool_calls_total", (("outcome", "ok"), ("tool", "clock")))] == 1.0
    assert ended[("parley_errors_total", (("type", "protocol.unknown_message"),))] == 1.0
    # Underruns depend on how loaded the machine is; the counter must agree with what the client was told.
    told = [m for m in client.messages if m.get("type") == "metrics" and "underrun_ms" in m]
    assert ended[("parley_audio_underruns_total", ())] == float(len(told))


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample, keyed by name and sorted labels; parsing fails loudly on malformed exposition."""
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples
