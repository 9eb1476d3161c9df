"""An agent's ``analysis:`` section: what its language model works out from a call once it has ended.

The settings are tenant input. The schema for structured data is checked here, when the agent is saved,
so a mistake shows up as a validation error on the agent rather than as a failed analysis later.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from parley.engine.schema_checks import UnsupportedSchema, check_schema
from parley.inputs import JsonObject, SafeStr

MAX_SCHEMA_BYTES = 16_000
"""A schema for a few dozen fields fits well within this; it goes whole into a prompt."""

Rubric = Annotated[SafeStr, Field(min_length=1, max_length=4000)]


def check_data_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema (draft 2020-12) describing one JSON object, within size, safe to validate with
    (``schema_checks``: no ``pattern``, only local ``$ref`` values that resolve)."""
    if len(json.dumps(schema)) > MAX_SCHEMA_BYTES:
        raise PydanticCustomError(
            "analysis_schema", "the schema is larger than {limit} bytes", {"limit": MAX_SCHEMA_BYTES}
        )
    if schema.get("type") != "object":
        raise PydanticCustomError("analysis_schema", 'the schema must describe an object ("type": "object")')
    try:
        check_schema(schema)
    except UnsupportedSchema as exc:
        raise PydanticCustomError("analysis_schema", "{detail}", {"detail": str(exc)}) from None
    return schema


class AnalysisSettings(BaseModel):
    """Post-call analysis. Off unless asked for: it runs the agent's model after every call it applies to."""

    model_config = ConfigDict(extra="forbid")

    summary: bool = Field(False, description="write a summary of the call in two or three sentences")
    structured_data_schema: JsonObject | None = Field(
        None,
        description="a JSON schema (type object) the model fills from the call; the result is validated",
    )
    success_rubric: Rubric | None = Field(
        None, description="how to judge the call; the model gives pass or fail with a one-sentence reason"
    )

    @model_validator(mode="after")
    def _schema(self) -> AnalysisSettings:
        if self.structured_data_schema is not None:
            check_data_schema(self.structured_data_schema)
        return self

    @property
    def enabled(self) -> bool:
        return self.summary or self.structured_data_schema is not None or self.success_rubric is not None
