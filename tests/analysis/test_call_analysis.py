"""Post-call analysis on the books: asked for when a call ends, done in the background, kept with the call,
shown by the API, and never lost to a process that stops before it ran."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.events import EventType
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.platform.simulation import record_simulation
from parley.providers.llm.base import ChatMessage, LanguageModel, LLMChunk, ToolSpec
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.store.agents import AgentRepository
from parley.store.calls import CallRepository
from parley.store.models import WebhookEvent
from parley.store.webhooks import WebhookRepository
from tests.api.conftest import BOOT_KEY, make_app
from tests.engine.harness import agent, speech
from tests.platform.live import run_live_call
from tests.timeline.samples import events

ANALYSIS = {
    "summary": True,
    "structured_data_schema": {
        "type": "object",
        "properties": {"greeting": {"type": "string"}},
        "required": ["greeting"],
    },
    "success_rubric": "The agent greeted the caller.",
}
RULES = [
    ScriptRule.say("Summarize", "The caller said hello. The agent offered help."),
    ScriptRule.say("JSON schema", '{"greeting": "Hello there"}'),
    ScriptRule.say("criterion", '{"evidence": "Hi! How can I help?", "success": true}'),
]
Resolver = Callable[[AgentConfig, str], Awaitable[LanguageModel]]


def scripted(model: LanguageModel | None = None) -> Resolver:
    async def resolve(_agent: AgentConfig, _org: str) -> LanguageModel:
        return model or ScriptedModel(RULES)

    return resolve


class Gated(ScriptedModel):
    """The scripted model, but nothing is said until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__(RULES)
        self.gate = asyncio.Event()
        self.asked = asyncio.Event()

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        self.asked.set()
        await self.gate.wait()
        async for chunk in super().stream(messages, tools, max_tokens=max_tokens, temperature=temperature):
            yield chunk


def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, database_url=db_url, api_key=BOOT_KEY)


async def open_platform(db_url: str, tmp_path: Path, models: Resolver) -> Platform:
    """A serving platform whose analyses use ``models`` (set before its worker starts)."""
    platform = await Platform.open(settings(db_url, tmp_path), consume=False)
    platform.analysis.models = models
    platform.start_consuming()
    return platform


async def test_an_ended_call_is_analysed_in_the_background_and_kept_with_it(
    db_url: str, tmp_path: Path
) -> None:
    model = Gated()
    platform = await open_platform(db_url, tmp_path, scripted(model))
    emitted: list[tuple[str, dict[str, Any]]] = []

    async def record(_session: AsyncSession, org_id: str, payload: dict[str, Any]) -> None:
        emitted.append((org_id, payload))

    platform.analysis.on_analyzed = record
    try:
        org = platform.default_org_id
        await platform.agents.create(
            org, AgentCreate(name="support", config=agent(first_message="Hello!", analysis=ANALYSIS))
        )
        live = await run_live_call(
            platform,
            "support",
            ["Hello there"],
            [ScriptRule.say("hello", "Hi! How can I help?")],
            [speech(0.8)],
        )
        await platform.settle()
        await asyncio.wait_for(model.asked.wait(), 10)
        during = await platform.calls.detail(org, live.call_id)
        model.gate.set()
        await platform.analysis.settle()
        after = await platform.calls.detail(org, live.call_id)
    finally:
        await platform.close()

    assert during.status == "completed", "hang-up does not wait for the analysis"
    assert during.analysis is not None and during.analysis.status == "running"
    analysis = after.analysis
    assert analysis is not None and analysis.status == "completed"
    assert analysis.summary == "The caller said hello. The agent offered help."
    assert analysis.structured_data == {"greeting": "Hello there"}
    assert analysis.success is True and analysis.success_reason == 'The call shows it: "Hi! How can I help?"'
    assert analysis.errors == {} and analysis.model == "scripted" and analysis.completed_at is not None
    transcript = "\n".join(m.content for call in model.calls for m in call)
    assert "Caller: Hello there" in transcript and "Agent: Hi! How can I help?" in transcript
    [(emitted_org, payload)] = emitted
    assert emitted_org == org and payload["call_id"] == live.call_id and payload["agent_id"] == after.agent_id
    assert payload["analysis"]["summary"] == analysis.summary and payload["analysis"]["status"] == "completed"


async def test_a_call_ended_while_no_worker_ran_is_analysed_when_one_starts(
    db_url: str, tmp_path: Path
) -> None:
    call_id = await record_simulation(
        agent=AgentConfig(name="sim", analysis=ANALYSIS),
        events=events("sim-1"),
        settings=settings(db_url, tmp_path),
    )
    platform = await open_platform(db_url, tmp_path, scripted())
    try:
        await platform.analysis.settle()
        detail = await platform.calls.detail(platform.default_org_id, call_id)
    finally:
        await platform.close()
    assert detail.analysis is not None and detail.analysis.status == "completed"
    assert detail.analysis.structured_data == {"greeting": "Hello there"}


async def test_a_model_that_never_loads_is_recorded_as_a_failed_analysis(db_url: str, tmp_path: Path) -> None:
    async def missing(_agent: AgentConfig, _org: str) -> LanguageModel:
        raise FileNotFoundError("no such model file")

    call_id = await record_simulation(
        agent=AgentConfig(name="sim", analysis=ANALYSIS),
        events=events("sim-2"),
        settings=settings(db_url, tmp_path),
    )
    platform = await Platform.open(settings(db_url, tmp_path), consume=False)
    platform.analysis.models = missing
    platform.analysis.lease = timedelta(0)  # retry at once instead of after the lease
    platform.analysis.max_attempts = 2
    platform.start_consuming()
    try:
        await platform.analysis.settle()
        detail = await platform.calls.detail(platform.default_org_id, call_id)
    finally:
        await platform.close()
    analysis = detail.analysis
    assert analysis is not None and analysis.status == "failed" and analysis.attempts == 2
    assert analysis.error is not None and "no such model file" in analysis.error
    assert analysis.summary is None


async def test_a_call_where_the_caller_said_nothing_is_skipped(db_url: str, tmp_path: Path) -> None:
    silent = [e for e in events("sim-3") if e.type is not EventType.TRANSCRIPT_FINAL]
    call_id = await record_simulation(
        agent=AgentConfig(name="sim", analysis=ANALYSIS),
        events=silent,
        settings=settings(db_url, tmp_path),
    )
    model = ScriptedModel(RULES)
    platform = await open_platform(db_url, tmp_path, scripted(model))
    try:
        await platform.analysis.settle()
        detail = await platform.calls.detail(platform.default_org_id, call_id)
    finally:
        await platform.close()
    assert detail.analysis is not None and detail.analysis.status == "skipped"
    assert detail.analysis.error == "the caller said nothing" and model.calls == []


async def test_the_api_shows_the_analysis_runs_it_again_and_each_run_is_a_webhook_event(
    db_url: str, tmp_path: Path
) -> None:
    plain = await record_simulation(
        agent=AgentConfig(name="plain"), events=events("sim-4"), settings=settings(db_url, tmp_path)
    )
    analysed = await record_simulation(
        agent=AgentConfig(name="sim", analysis=ANALYSIS),
        events=events("sim-5"),
        settings=settings(db_url, tmp_path),
    )
    model = ScriptedModel(RULES)
    platform = await Platform.open(settings(db_url, tmp_path), consume=False)
    async with platform.db.session() as session:
        await WebhookRepository(session).add_endpoint(
            platform.default_org_id,
            url="https://hooks.example.com/parley",
            events=["call.analyzed"],
            secret_ciphertext="unused here",
            description="",
        )
    platform.analysis.models = scripted(model)
    platform.start_consuming()
    try:
        await platform.analysis.settle()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=make_app(platform)),
            base_url="http://parley.test",
            headers={"Authorization": f"Bearer {BOOT_KEY}"},
        ) as http:
            shown = (await http.get(f"/v1/calls/{analysed}")).json()
            assert (await http.get(f"/v1/calls/{plain}")).json()["analysis"] is None
            again = await http.post(f"/v1/calls/{analysed}/analysis")
            await platform.analysis.settle()
            rerun = (await http.get(f"/v1/calls/{analysed}")).json()["analysis"]
            refused = await http.post(f"/v1/calls/{plain}/analysis")
            missing = await http.post("/v1/calls/call_missing/analysis")
        async with platform.db.session() as session:
            outbox = list(await session.scalars(select(WebhookEvent).order_by(WebhookEvent.created_at)))
    finally:
        await platform.close()

    assert shown["analysis"]["status"] == "completed"
    assert shown["analysis"]["summary"] == "The caller said hello. The agent offered help."
    assert shown["analysis"]["success"] is True
    assert again.status_code == 202 and again.json()["status"] == "pending"
    assert rerun["status"] == "completed" and rerun["completed_at"] > shown["analysis"]["completed_at"]
    assert len(model.calls) == 6, "three parts, twice"
    assert refused.status_code == 409 and "asks for no analysis" in refused.json()["detail"]
    assert missing.status_code == 404
    assert [(e.type, e.payload["call_id"]) for e in outbox] == [("call.analyzed", analysed)] * 2, (
        "one per run"
    )
    assert [e.payload["analysis"]["status"] for e in outbox] == ["completed", "completed"]
    assert outbox[1].payload["analysis"]["summary"] == rerun["summary"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_command_line_shows_and_reruns_the_analysis(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``parley calls analyze`` runs here and now with the agent's own (here: scripted) model."""
    import typer
    from typer.testing import CliRunner

    from parley.commands.calls import calls_app
    from parley.config import get_settings

    config = AgentConfig.model_validate(
        {
            "name": "sim",
            "analysis": ANALYSIS,
            "asr": {"provider": "scripted"},
            "vad": {"provider": "energy"},
            "tts": {"provider": "tone"},
            "llm": {
                "provider": "scripted",
                "options": {
                    "rules": [
                        {"pattern": "Summarize", "reply": "A short hello."},
                        {"pattern": "JSON schema", "reply": '{"greeting": "Hello there"}'},
                        {"pattern": "criterion", "reply": '{"evidence": "", "success": false}'},
                    ]
                },
            },
        }
    )
    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        call_id = await record_simulation(agent=config, events=events("sim-6"))
        app = typer.Typer()
        app.add_typer(calls_app, name="calls")
        pending = await asyncio.to_thread(CliRunner().invoke, app, ["calls", "show", call_id])
        ran = await asyncio.to_thread(CliRunner().invoke, app, ["calls", "analyze", call_id])
        shown = await asyncio.to_thread(CliRunner().invoke, app, ["calls", "show", call_id])
    finally:
        get_settings.cache_clear()
    assert "analysis: pending" in pending.stdout
    assert ran.exit_code == 0, ran.stdout
    assert "analysis: completed (scripted)" in shown.stdout
    assert "summary: A short hello." in shown.stdout
    assert "success: fail: The call does not show that the criterion was met." in shown.stdout
    assert 'data: {"greeting": "Hello there"}' in shown.stdout


CYCLIC_SCHEMA: dict[str, Any] = {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}


async def store_unchecked_schema(db_url: str, tmp_path: Path, call_id: str) -> None:
    """Give the call's agent version a schema saved before schemas were checked (the row as stored)."""
    platform = await Platform.open(settings(db_url, tmp_path), consume=False, recover=False)
    try:
        async with platform.db.session() as session:
            call = await CallRepository(session).get(call_id)
            assert call is not None and call.agent_version_id is not None
            version = await AgentRepository(session).version_by_id(call.agent_version_id)
            assert version is not None
            analysis = {**version.config["analysis"], "structured_data_schema": CYCLIC_SCHEMA}
            version.config = {**version.config, "analysis": analysis}
    finally:
        await platform.close()


async def test_an_agent_version_stored_with_a_schema_now_refused_fails_at_once_with_why(
    db_url: str, tmp_path: Path
) -> None:
    call_id = await record_simulation(
        agent=AgentConfig(name="sim", analysis=ANALYSIS),
        events=events("sim-7"),
        settings=settings(db_url, tmp_path),
    )
    await store_unchecked_schema(db_url, tmp_path, call_id)
    model = ScriptedModel(RULES)
    platform = await open_platform(db_url, tmp_path, scripted(model))
    try:
        await platform.analysis.settle()
        detail = await platform.calls.detail(platform.default_org_id, call_id)
    finally:
        await platform.close()
    analysis = detail.analysis
    assert analysis is not None and analysis.status == "failed" and analysis.attempts == 1
    assert analysis.error is not None and "is no longer valid" in analysis.error
    assert "cannot be analysed; analysis: $ref '#/$defs/n' leads back to itself" in analysis.error
    assert model.calls == []


class Crashing(ScriptedModel):
    """A model that loads, then fails in a way no retry mends (a bug, not an outage)."""

    def count_tokens(self, text: str) -> int:
        raise TypeError("count_tokens() got an unexpected keyword")


async def test_an_analysis_that_crashes_is_failed_at_once_with_why(db_url: str, tmp_path: Path) -> None:
    call_id = await record_simulation(
        agent=AgentConfig(name="sim", analysis=ANALYSIS),
        events=events("sim-8"),
        settings=settings(db_url, tmp_path),
    )
    platform = await open_platform(db_url, tmp_path, scripted(Crashing(RULES)))
    try:
        await platform.analysis.settle()
        detail = await platform.calls.detail(platform.default_org_id, call_id)
    finally:
        await platform.close()
    analysis = detail.analysis
    assert analysis is not None and analysis.status == "failed" and analysis.attempts == 1
    assert analysis.error == "the analysis crashed: TypeError('count_tokens() got an unexpected keyword')"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_command_line_says_in_one_line_why_a_call_cannot_be_analysed(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import typer
    from typer.testing import CliRunner

    from parley.commands.calls import calls_app
    from parley.config import get_settings

    monkeypatch.setenv("PARLEY_DATABASE_URL", db_url)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        call_id = await record_simulation(
            agent=AgentConfig(name="sim", analysis=ANALYSIS), events=events("sim-9")
        )
        await store_unchecked_schema(db_url, tmp_path, call_id)
        app = typer.Typer()
        app.add_typer(calls_app, name="calls")
        ran = await asyncio.to_thread(CliRunner().invoke, app, ["calls", "analyze", call_id])
    finally:
        get_settings.cache_clear()
    assert ran.exit_code == 2 and isinstance(ran.exception, SystemExit), ran.output
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith(f"error: the agent version of call {call_id} is no longer valid")
    assert "leads back to itself" in line and ran.stdout == ""
