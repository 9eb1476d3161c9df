"""Post-call analysis with the embedded default model (Qwen2.5-Coder 0.5B Instruct through its chat
template): one short booking call, all three parts, and a rubric the call does not meet."""

from __future__ import annotations

from typing import Any

import pytest

from parley.analysis import Line, analyze
from parley.engine.analysis_settings import AnalysisSettings

pytestmark = pytest.mark.models

CALL = [
    Line("agent", "Hello, Bright Smile Dental, how can I help?"),
    Line("user", "Hi, this is Maria Lopez. I'd like to book a teeth cleaning for Tuesday morning."),
    Line("agent", "Tuesday at nine o'clock is free. Shall I book it for you?"),
    Line("user", "Yes please, that works."),
    Line("agent", "You're booked for a cleaning on Tuesday at nine. Goodbye!"),
]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "caller_name": {"type": "string"},
        "day": {"type": "string", "enum": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]},
        "booked": {"type": "boolean"},
    },
    "required": ["caller_name", "day", "booked"],
}


async def test_the_default_model_summarises_extracts_and_judges_a_call() -> None:
    from parley.providers.assets import qwen_gguf
    from parley.providers.llm.llamacpp import LlamaCppModel

    llm = await LlamaCppModel.open(qwen_gguf(), chat=True)
    try:
        result = await analyze(
            llm,
            AnalysisSettings(
                summary=True,
                structured_data_schema=SCHEMA,
                success_rubric="Success means an appointment was booked during the call.",
            ),
            CALL,
        )
        unmet = await analyze(
            llm, AnalysisSettings(success_rubric="Success means the caller paid a deposit."), CALL
        )
    finally:
        llm.close()

    assert result.errors == {}
    assert result.summary is not None and "tuesday" in result.summary.lower()
    assert 1 <= result.summary.count(".") <= 3
    data = result.structured_data
    assert data is not None and "Maria" in data["caller_name"] and data["day"] == "Tuesday" and data["booked"]
    assert result.success is True and result.success_reason
    assert unmet.success is False, unmet.success_reason
