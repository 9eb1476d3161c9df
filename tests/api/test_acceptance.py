"""Acceptance: a conversation on the live-voice path is visible whole through the API and the CLI —
call row, transcript turns, timeline events, a playable recording and a cost breakdown."""

from __future__ import annotations

import asyncio
import io
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from parley.commands.agents import agents_app
from parley.commands.calls import calls_app
from parley.config import get_settings
from parley.platform.runtime import Platform
from parley.providers.llm.scripted import ScriptRule
from tests.api.sse import parse
from tests.engine.harness import agent, speech
from tests.platform.live import run_live_call


def cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(agents_app, name="agents")
    root.add_typer(calls_app, name="calls")
    return root


async def test_a_live_call_through_the_api_and_the_cli(
    client: httpx.AsyncClient,
    platform: Platform,
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    tmp_path: Path,
) -> None:
    config = agent(first_message="Hi, this is Parley.").model_dump(mode="json")
    made = await client.post("/v1/agents", json={"name": "receptionist", "config": config})
    assert made.status_code == 201
    live = await run_live_call(
        platform,
        "receptionist",
        ["Can I book a table?"],
        [ScriptRule.say("book", "Sure, for how many?")],
        [speech(0.9)],
    )
    await platform.settle()

    listing = (
        await client.get(
            "/v1/calls", params={"status": "completed", "direction": "web", "agent_id": made.json()["id"]}
        )
    ).json()
    assert [c["id"] for c in listing["data"]] == [live.call_id]
    assert (await client.get("/v1/calls", params={"status": "failed"})).json()["data"] == []

    detail = (await client.get(f"/v1/calls/{live.call_id}")).json()
    assert detail["status"] == "completed" and detail["agent_version"] == 1
    assert [(t["speaker"], t["text"]) for t in detail["transcript"]] == [
        ("agent", "Hi, this is Parley."),
        ("user", "Can I book a table?"),
        ("agent", "Sure, for how many?"),
    ]
    assert (
        detail["events"][0]["type"] == "session.started" and detail["events"][-1]["type"] == "session.ended"
    )
    assert detail["metrics"]["latency"]["voice_to_voice_ms"]["count"] == 1
    costs = detail["costs"]
    assert costs["currency"] == "INR" and Decimal(costs["total"]) == (
        Decimal(costs["total_usd"]) * 85
    ).quantize(Decimal("0.01"))
    assert Decimal(costs["markup_usd"]) > 0 and not costs["provisional"]

    recording = detail["recording"]
    assert recording["status"] == "ready" and recording["url"].endswith(f"/v1/calls/{live.call_id}/recording")
    audio = await client.get(recording["url"])
    assert audio.status_code == 200 and audio.headers["content-type"] == "audio/wav"
    samples, rate = sf.read(io.BytesIO(audio.content), dtype="int16", always_2d=True)
    assert samples.shape[1] == 2 and rate == 16000
    assert abs(len(samples) / rate * 1000 - recording["duration_ms"]) < 5 and samples.any()

    feed = await client.get(f"/v1/calls/{live.call_id}/events")
    assert feed.headers["content-type"].startswith("text/event-stream")
    messages = parse(feed.text.splitlines())
    assert [m.event for m in messages[:-1]] == [e["type"] for e in detail["events"]]
    assert messages[-1].event == "end"
    resumed = await client.get(
        f"/v1/calls/{live.call_id}/events", headers={"Last-Event-ID": messages[-4].id or ""}
    )
    assert [m.id for m in parse(resumed.text.splitlines())] == [m.id for m in messages[-3:]]

    usage = (await client.get("/v1/usage")).json()
    assert {line["kind"] for line in usage["lines"]} >= {"asr_seconds", "tts_characters", "llm_input_tokens"}
    assert usage["total_usd"] == costs["total_usd"]

    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    monkeypatch.setenv("PARLEY_CURRENCY_RATES", '{"INR": 85.0}')
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        listed = await asyncio.to_thread(runner.invoke, cli(), ["calls", "list", "--json"])
        shown = await asyncio.to_thread(runner.invoke, cli(), ["calls", "show", live.call_id, "--json"])
        human = await asyncio.to_thread(runner.invoke, cli(), ["calls", "show", live.call_id])
    finally:
        get_settings.cache_clear()
    assert listed.exit_code == 0, listed.output
    assert [c["id"] for c in json.loads(listed.stdout)["data"]] == [live.call_id]
    shown_detail = json.loads(shown.stdout)
    assert shown_detail["transcript"] == detail["transcript"] and shown_detail["costs"] == costs
    assert "Can I book a table?" in human.stdout and "INR" in human.stdout
