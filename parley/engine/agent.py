"""Agent configuration: who the agent is and how it listens, thinks and speaks (YAML or Python)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class EndpointingSettings(BaseModel):
    """When the user's turn is over. Times in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    start_threshold: float = Field(0.5, ge=0, le=1, description="VAD probability that opens speech")
    stop_threshold: float = Field(0.35, ge=0, le=1, description="VAD probability below which speech pauses")
    min_speech_ms: int = Field(64, ge=0, description="voiced time needed before speech counts as started")
    pause_ms: int = Field(96, ge=0, description="silence that marks a pause; a speculative reply starts here")
    min_silence_ms: int = Field(200, ge=0, description="silence that ends a turn that is clearly complete")
    unsure_silence_ms: int = Field(
        800, ge=0, description="silence that ends a turn of uncertain completeness"
    )
    max_silence_ms: int = Field(1400, ge=0, description="silence that ends any turn")
    semantic: bool = Field(True, description="use the end-of-turn model and transcript to pick the silence")


class InterruptionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    min_words: int = Field(1, ge=0, description="real words needed to confirm a barge-in")
    merge_window_ms: int = Field(
        1000,
        ge=0,
        description="a user who speaks again this soon after their own last word had only paused, even if "
        "the agent already started answering: the new words join that turn and the answer is dropped",
    )
    backchannels: list[str] = Field(
        default_factory=lambda: [
            "uh-huh",
            "uh huh",
            "mm-hmm",
            "mhm",
            "mm",
            "hmm",
            "yeah",
            "yep",
            "ok",
            "okay",
            "right",
            "uh",
            "um",
            "ah",
            "oh",
            "yes",
            "sure",
            "i see",
        ]
    )


class ProviderSettings(BaseModel):
    """Which engine to use for a role, and its options (passed to the engine's constructor)."""

    model_config = ConfigDict(extra="forbid")

    provider: str
    options: dict[str, Any] = Field(default_factory=dict)


class ToolSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout_s: float = Field(5.0, gt=0)
    side_effect: bool = False
    kind: Literal["builtin", "static"] = "builtin"
    result: Any = None
    """For ``static`` tools: the result returned to the model (handy for demos and tests)."""


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = "assistant"
    system_prompt: str = (
        "You are a friendly, helpful voice assistant. Answer briefly, in one or two short sentences."
    )
    first_message: str | None = None
    knowledge: list[str] = Field(
        default_factory=list, description="facts put into the prompt to ground answers"
    )
    asr: ProviderSettings = Field(default_factory=lambda: ProviderSettings(provider="whisper"))
    llm: ProviderSettings = Field(default_factory=lambda: ProviderSettings(provider="llamacpp"))
    tts: ProviderSettings = Field(default_factory=lambda: ProviderSettings(provider="piper"))
    vad: ProviderSettings = Field(default_factory=lambda: ProviderSettings(provider="silero"))
    endpointing: EndpointingSettings = Field(default_factory=EndpointingSettings)
    interruption: InterruptionSettings = Field(default_factory=InterruptionSettings)
    tools: list[ToolSettings] = Field(default_factory=list)
    max_reply_tokens: int = Field(60, gt=0)
    temperature: float = Field(0.0, ge=0)
    context_token_budget: int = Field(1200, gt=0)
    max_tool_rounds: int = Field(3, ge=0)
    error_message: str = Field(
        "Sorry, I'm having trouble answering right now. Could you say that again?",
        description="spoken when the language model fails",
    )


class AgentConfigError(ValueError):
    pass


def load_agent(path: str | Path) -> AgentConfig:
    """Load an agent from a YAML file, with errors that name the file and the bad field."""
    file = Path(path)
    if not file.is_file():
        raise AgentConfigError(f"agent file not found: {file}")
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise AgentConfigError(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise AgentConfigError(f"{file}: expected a mapping of agent settings at the top level")
    try:
        return AgentConfig.model_validate(raw)
    except ValidationError as exc:
        raise AgentConfigError(f"{file}: invalid agent config:\n{exc}") from exc


def default_agent() -> AgentConfig:
    """The built-in friendly general assistant used when no agent is given."""
    return load_agent(Path(__file__).resolve().parent.parent / "agents" / "default.yaml")
