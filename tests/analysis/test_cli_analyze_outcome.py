"""``parley calls analyze`` exits 0 only when the analysis it ran completed whole; otherwise it exits 1
and says why in one line on stderr (what it printed of the analysis stays on stdout)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from parley.commands.calls import calls_app
from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.platform.simulation import record_simulation
from parley.providers.llm.base import LanguageModel
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
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


def agent(rules: list[dict[str, str]]) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "name": "sim",
            "analysis": ANALYSIS,
            "asr": {"provider": "scripted"},
            "vad": {"provider": "energy"},
            "tts": {"provider": "tone"},
            "llm": {"provider": "scripted", "options": {"rules": rules}},
        }
    )


GOOD = [
    {"pattern": "Summarize", "reply": "A short hello."},
    {"pattern": "JSON schema", "reply": '{"greeting": "Hello there"}'},
    {"pattern": "criterion", "reply": '{"evidence": "Hi", "success": true}'},
]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PARLEY_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def analyze(config: AgentConfig, session: str) -> Result:
    call_id = await record_simulation(agent=config, events=events(session))
    app = typer.Typer()
    app.add_typer(calls_app, name="calls")
    return await asyncio.to_thread(CliRunner().invoke, app, ["calls", "analyze", call_id])


def failed_with(ran: Result) -> str:
    assert ran.exit_code == 1, ran.output
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("error: "), line
    return line


async def test_a_completed_analysis_exits_0(store: None) -> None:
    ran = await analyze(agent(GOOD), "cli-ok")
    assert ran.exit_code == 0, ran.output
    assert "analysis: completed" in ran.stdout and ran.stderr == ""


async def test_a_model_that_cannot_be_loaded_exits_1_saying_why(
    store: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def missing(_agent: AgentConfig, _secrets: Mapping[str, str]) -> LanguageModel:
        raise RuntimeError("the model file gemma.gguf is missing")

    monkeypatch.setattr("parley.platform.analysis.stack_model", missing)
    ran = await analyze(agent(GOOD), "cli-no-model")
    line = failed_with(ran)
    assert "the analysis failed and will be tried again by a server" in line, line
    assert "could not load the language model" in line and "gemma.gguf is missing" in line, line
    assert "analysis: running" in ran.stdout


class Crashing(ScriptedModel):
    """Loads, then fails in a way no retry mends."""

    def count_tokens(self, text: str) -> int:
        raise TypeError("count_tokens() got an unexpected keyword")


async def test_an_analysis_that_fails_exits_1_saying_why(
    store: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def crashing(_agent: AgentConfig, _secrets: Mapping[str, str]) -> LanguageModel:
        return Crashing([ScriptRule.say("Summarize", "A short hello.")])

    monkeypatch.setattr("parley.platform.analysis.stack_model", crashing)
    ran = await analyze(agent(GOOD), "cli-crash")
    line = failed_with(ran)
    assert line == (
        "error: the analysis failed: the analysis crashed: "
        "TypeError('count_tokens() got an unexpected keyword')"
    ), line
    assert "analysis: failed" in ran.stdout


async def test_an_analysis_with_a_failed_part_exits_1_naming_the_part(store: None) -> None:
    rules: list[dict[str, Any]] = [*GOOD[:1], {"pattern": "JSON schema", "reply": "no JSON here"}, GOOD[2]]
    ran = await analyze(agent(rules), "cli-part")
    line = failed_with(ran)
    assert line.startswith("error: part of the analysis failed (structured_data: "), line
    assert "summary: A short hello." in ran.stdout
