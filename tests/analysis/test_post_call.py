"""Post-call analysis over a transcript, with the scripted model: what the caller of ``analyze`` gets."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from pydantic import ValidationError

from parley.analysis import AnalysisModelError, Line, analyze
from parley.analysis.post_call import extract_json, transcript_text, validation_error
from parley.engine.agent import AgentConfig
from parley.engine.analysis_settings import AnalysisSettings
from parley.engine.schema_checks import UnsupportedSchema
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolSpec
from parley.providers.llm.scripted import ScriptedModel, ScriptRule

CALL = [
    Line("agent", "Hello, Bright Smile Dental, how can I help?"),
    Line("user", "Hi, this is Maria Lopez. I'd like to book a cleaning for Tuesday morning."),
    Line("agent", "Tuesday at nine is free. Shall I book it?"),
    Line("user", "Yes please."),
    Line("agent", "Done: Tuesday at nine. Goodbye!"),
]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "day": {"type": "string", "enum": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]},
        "booked": {"type": "boolean"},
    },
    "required": ["name", "day", "booked"],
}


def settings(**values: Any) -> AnalysisSettings:
    return AnalysisSettings.model_validate(values)


async def test_a_summary_is_two_or_three_sentences_of_what_happened() -> None:
    llm = ScriptedModel(
        [
            ScriptRule.say(
                "Summarize",
                "Summary: Maria Lopez called to book a cleaning. The agent offered Tuesday at nine. "
                "She accepted and the call ended. Everyone was polite.",
            )
        ]
    )
    result = await analyze(llm, settings(summary=True), CALL)
    assert result.summary == (
        "Maria Lopez called to book a cleaning. The agent offered Tuesday at nine. "
        "She accepted and the call ended."
    )
    assert result.errors == {} and result.structured_data is None and result.success is None
    asked = llm.calls[0][-1].content
    assert "Caller: Hi, this is Maria Lopez." in asked and "Agent: Tuesday at nine is free." in asked


async def test_structured_data_is_read_out_of_prose_and_code_fences() -> None:
    reply = 'Here it is:\n```json\n{"name": "Maria Lopez", "day": "Tuesday", "booked": true}\n```'
    llm = ScriptedModel([ScriptRule.say("JSON schema", reply)])
    result = await analyze(llm, settings(structured_data_schema=SCHEMA), CALL)
    assert result.structured_data == {"name": "Maria Lopez", "day": "Tuesday", "booked": True}
    assert len(llm.calls) == 1
    assert '"enum": ["Monday"' in llm.calls[0][-1].content, "the schema is in the request"


async def test_invalid_data_is_sent_back_once_with_the_validation_error() -> None:
    llm = ScriptedModel(
        [
            ScriptRule.say("not right", '{"name": "Maria Lopez", "day": "Tuesday", "booked": true}'),
            ScriptRule.say("JSON schema", '{"name": "Maria Lopez", "day": "Tue", "booked": "yes"}'),
        ]
    )
    result = await analyze(llm, settings(structured_data_schema=SCHEMA), CALL)
    assert result.structured_data == {"name": "Maria Lopez", "day": "Tuesday", "booked": True}
    retry = llm.calls[1]
    assert [m.role for m in retry[-2:]] == ["assistant", "user"]
    assert retry[-2].content.startswith('{"name": "Maria Lopez", "day": "Tue"')
    assert "at booked" in retry[-1].content or "at day" in retry[-1].content


async def test_data_invalid_twice_is_recorded_as_a_failure_and_the_other_parts_still_run() -> None:
    llm = ScriptedModel(
        [
            ScriptRule.say("Summarize", "Maria booked a cleaning for Tuesday."),
            ScriptRule.say("criterion", '{"evidence": "Done: Tuesday at nine.", "success": true}'),
            ScriptRule.say(re.compile("JSON schema|not right"), "I think her name was Maria."),
        ]
    )
    result = await analyze(
        llm,
        settings(summary=True, structured_data_schema=SCHEMA, success_rubric="An appointment was booked."),
        CALL,
    )
    assert result.structured_data is None
    problem = result.errors["structured_data"]
    assert "no JSON object" in problem and "after one retry" in problem and "her name was Maria" in problem
    assert result.summary == "Maria booked a cleaning for Tuesday."
    assert result.success is True and result.success_reason == 'The call shows it: "Done: Tuesday at nine."'
    assert len(llm.calls) == 4, "summary, data, data again, verdict"


async def test_a_pass_quotes_the_call() -> None:
    llm = ScriptedModel([ScriptRule.say("criterion", '{"evidence": "this is Maria Lopez", "success": true}')])
    result = await analyze(llm, settings(success_rubric="The caller gave their name."), CALL)
    assert result.success is True and result.success_reason == 'The call shows it: "this is Maria Lopez"'
    assert "The caller gave their name." in llm.calls[0][-1].content


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('{"evidence": "", "success": false}', "The call does not show that the criterion was met."),
        ('{"evidence": "", "success": true}', "The model found no words in the call that show"),
        (
            '{"evidence": "The caller paid a deposit by card.", "success": true}',
            'The evidence the model gave is not in the call ("The caller paid a deposit by card.")',
        ),
    ],
)
async def test_a_fail_or_a_pass_the_call_does_not_show_is_a_fail(reply: str, reason: str) -> None:
    llm = ScriptedModel([ScriptRule.say("criterion", reply)])
    result = await analyze(llm, settings(success_rubric="The caller paid a deposit."), CALL)
    assert result.success is False and result.success_reason is not None
    assert result.success_reason.startswith(reason)


async def test_a_verdict_without_evidence_is_retried_then_recorded() -> None:
    llm = ScriptedModel([ScriptRule.say(re.compile("criterion|not right"), '{"success": true}')])
    result = await analyze(llm, settings(success_rubric="Booked."), CALL)
    assert result.success is None
    assert "'evidence' is a required property" in result.errors["success"]


class Broken:
    name = "broken"

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        raise ConnectionError("model server is down")
        yield LLMChunk()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        return None


async def test_a_model_that_cannot_answer_is_an_error_worth_retrying() -> None:
    with pytest.raises(AnalysisModelError, match="model server is down"):
        await analyze(Broken(), settings(summary=True), CALL)


def test_a_long_call_keeps_its_beginning_and_its_end() -> None:
    lines = [Line("user" if i % 2 else "agent", f"line number {i} " + "word " * 20) for i in range(60)]
    text = transcript_text(lines, ScriptedModel([]), budget=300)
    kept = text.splitlines()
    assert kept[0].startswith("Agent: line number 0 ") and kept[-1].startswith("Caller: line number 59 ")
    assert any(re.fullmatch(r"\[\.\.\. \d+ lines left out \.\.\.\]", line) for line in kept)
    assert sum(len(line.split()) + 1 for line in kept) <= 300 + 10


def test_json_is_found_after_a_false_start() -> None:
    assert extract_json('{oops} then {"a": 1}') == {"a": 1}
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("[1, 2]")


def test_analysis_is_off_unless_asked_for() -> None:
    assert not AgentConfig().analysis.enabled
    assert settings(summary=True).enabled and settings(success_rubric="x").enabled


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "array"}, "must describe an object"),
        ({"type": "object", "properties": {"id": {"type": "string", "pattern": "^(a+)+$"}}}, "pattern"),
        ({"type": "object", "properties": {"x": {"$ref": "https://example.com/s.json"}}}, "local \\$ref"),
        ({"type": "object", "properties": {"x": {"type": "nonsense"}}}, "not a valid JSON schema"),
        ({"type": "object", "description": "x" * 20_000}, "larger than"),
        ({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}, "points to nothing"),
        (
            {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"},
            "leads back to itself",
        ),
    ],
)
def test_a_bad_schema_is_refused_when_the_agent_is_saved(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        AgentConfig.model_validate({"analysis": {"structured_data_schema": schema}})


async def test_a_property_may_be_named_like_a_keyword() -> None:
    schema = {
        "type": "object",
        "properties": {"pattern": {"type": "string"}, "$ref": {"type": "string"}},
        "required": ["pattern"],
    }
    config = AgentConfig.model_validate({"analysis": {"structured_data_schema": schema}})
    llm = ScriptedModel([ScriptRule.say("JSON schema", '{"pattern": "weekly", "$ref": "A17"}')])
    result = await analyze(llm, config.analysis, CALL)
    assert result.structured_data == {"pattern": "weekly", "$ref": "A17"} and result.errors == {}


CYCLIC: dict[str, Any] = {"type": "object", "$defs": {"n": {"$ref": "#/$defs/n"}}, "$ref": "#/$defs/n"}


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (CYCLIC, "leads back to itself"),
        ({"type": "object", "properties": {"x": {"$ref": "#/$defs/gone"}}}, "points to nothing"),
    ],
)
async def test_a_stored_schema_that_cannot_be_used_fails_its_part_only(
    schema: dict[str, Any], reason: str
) -> None:
    """An agent saved before its schema was checked: the part fails with why, the others still run."""
    stored = AnalysisSettings.model_construct(summary=True, structured_data_schema=schema)
    llm = ScriptedModel(
        [ScriptRule.say("Summarize", "Maria booked a cleaning."), ScriptRule.say("JSON schema", "{}")]
    )
    result = await analyze(llm, stored, CALL)
    assert result.structured_data is None and result.summary == "Maria booked a cleaning."
    assert result.errors["structured_data"].startswith("the structured_data_schema cannot be used: ")
    assert reason in result.errors["structured_data"]
    assert len(llm.calls) == 1, "the model is not asked for data no schema can check"


def test_validating_with_a_broken_schema_is_a_typed_error() -> None:
    with pytest.raises(UnsupportedSchema, match="RecursionError"):
        validation_error({}, CYCLIC)
