"""What an agent may set for each provider: an allow-list with bounds, per role and provider.

An agent's configuration is tenant input (``POST /v1/agents``), so it is data and never host
configuration: programs, model files and directories, base URLs, thread counts and context sizes are the
operator's (``PARLEY_*`` settings, see ``parley.config``). Anything not listed here is refused with an error
that names the field, and the number ranges keep every session's cost bounded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from parley.inputs import JsonObject, SafeStr

Role = Literal["asr", "llm", "tts", "vad"]

SafeText = Annotated[SafeStr, Field(max_length=2000)]
SecretName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
ModelName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.:/-]{1,100}$")]


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


# --- voice activity --------------------------------------------------------------------------------


class SileroOptions(_Options):
    pass


class WebRtcVadOptions(_Options):
    aggressiveness: int = Field(2, ge=0, le=3)


class EnergyVadOptions(_Options):
    threshold_dbfs: float = Field(-40.0, ge=-90, le=0)
    softness_db: float = Field(6.0, gt=0, le=40)


# --- speech recognition ----------------------------------------------------------------------------


class WhisperOptions(_Options):
    model: Literal["tiny.en", "base"] = "tiny.en"
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")] | None = "en"
    beam_size: int = Field(1, ge=1, le=5)
    initial_prompt: Annotated[SafeStr, Field(max_length=500)] | None = None
    hotwords: Annotated[SafeStr, Field(max_length=500)] | None = None


class ScriptedAsrOptions(_Options):
    """The deterministic test recogniser: hears the given lines in order, whatever the audio."""

    lines: list[SafeText] = Field(default_factory=list, max_length=500)
    seconds_per_word: float = Field(0.3, gt=0, le=5)


# --- language models -------------------------------------------------------------------------------


class LlamaCppOptions(_Options):
    """One of the models that ship with Parley, by name (the operator may swap in another file with
    PARLEY_LLAMACPP_MODEL_PATH)."""

    model: Literal["qwen2.5-coder-0.5b", "gemma-3-270m"] = "qwen2.5-coder-0.5b"
    """The instruct model (chat template, native tool calls; the default), or Gemma 3 270M, a base model."""
    seed: int = Field(0, ge=0, le=2**31 - 1)


class OpenAIOptions(_Options):
    model: ModelName
    """One of the operator's PARLEY_OPENAI_MODELS (checked when the agent is saved and when it runs)."""
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key (``PUT /v1/secrets/{name}``); default: the
    operator's PARLEY_OPENAI_API_KEY."""


class ScriptRuleOptions(_Options):
    pattern: Annotated[SafeStr, Field(min_length=1, max_length=500)]
    reply: SafeText = ""
    tool: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = None
    arguments: JsonObject = Field(default_factory=dict)
    on_tool_result: bool = False


class ScriptedLlmOptions(_Options):
    """The deterministic test model: answers by rules, streaming token by token."""

    rules: list[ScriptRuleOptions] = Field(default_factory=list, max_length=200)
    default_reply: SafeText = "Sorry, I don't know about that."
    token_delay: float = Field(0.0, ge=0, le=1)


# --- speech synthesis ------------------------------------------------------------------------------


class PiperOptions(_Options):
    length_scale: float | None = Field(None, ge=0.5, le=2.0, description="speaking rate: 0.5 fast, 2 slow")
    volume: float = Field(1.0, gt=0, le=2.0)
    speaker_id: int | None = Field(None, ge=0, le=1000)


class EspeakOptions(_Options):
    voice: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}([-+][A-Za-z0-9]{1,12}){0,3}$")] = "en-us"
    rate_wpm: int = Field(175, ge=80, le=450)


class ToneOptions(_Options):
    """The deterministic test voice: a tone as long as the text."""

    sample_rate: Literal[8000, 16000, 22050, 24000, 44100, 48000] = 16000
    ms_per_char: float = Field(50.0, gt=0, le=500)
    chunk_ms: float = Field(20.0, ge=5, le=200)
    frequency: float = Field(440.0, ge=20, le=8000)
    amplitude: float = Field(0.1, ge=0, le=1)


PROVIDER_OPTIONS: dict[Role, dict[str, type[_Options]]] = {
    "vad": {"silero": SileroOptions, "webrtc": WebRtcVadOptions, "energy": EnergyVadOptions},
    "asr": {"whisper": WhisperOptions, "scripted": ScriptedAsrOptions},
    "llm": {"llamacpp": LlamaCppOptions, "openai": OpenAIOptions, "scripted": ScriptedLlmOptions},
    "tts": {"piper": PiperOptions, "espeak": EspeakOptions, "tone": ToneOptions},
}

OPERATOR_SETTINGS: dict[str, str] = {
    "program": "PARLEY_ESPEAK_PROGRAM",
    "model_path": "PARLEY_LLAMACPP_MODEL_PATH",
    "model_dir": "PARLEY_WHISPER_MODEL_DIR",
    "onnx_path": "PARLEY_PIPER_VOICE",
    "config_path": "PARLEY_PIPER_VOICE",
    "base_url": "PARLEY_OPENAI_BASE_URL",
    "api_key": "PARLEY_OPENAI_API_KEY, or api_key_secret naming an organization secret",
    "n_ctx": "PARLEY_LLAMACPP_N_CTX",
    "n_threads": "PARLEY_MODEL_THREADS",
    "n_batch": "PARLEY_LLAMACPP_N_BATCH",
    "threads": "PARLEY_MODEL_THREADS",
    "cpu_threads": "PARLEY_MODEL_THREADS",
    "compute_type": "PARLEY_WHISPER_COMPUTE_TYPE",
}
"""Options that used to be accepted from agents, and the operator setting that now carries each."""


class OptionsError(ValueError):
    """Options an agent may not set, or values out of bounds; ``field`` is the dotted option name."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate_options(role: Role, provider: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options as validated, with unset ones left out; ``OptionsError`` names the first bad field."""
    table = PROVIDER_OPTIONS[role]
    schema = table.get(provider)
    if schema is None:  # perhaps an installed plugin's (entry point group ``parley.providers``)
        from parley.providers.registry import load_plugins

        load_plugins()
        schema = table.get(provider)
    if schema is None:
        raise OptionsError(
            "provider", f"unknown {role} provider {provider!r} (choose {', '.join(sorted(table))})"
        )
    for name in options:
        if name not in schema.model_fields:
            allowed = ", ".join(schema.model_fields) or "none"
            hint = OPERATOR_SETTINGS.get(name)
            where = f"; it is an operator setting ({hint})" if hint else ""
            raise OptionsError(
                f"options.{name}",
                f"{provider} has no agent option {name!r}{where}; allowed options: {allowed}",
            )
    try:
        checked = schema.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        raise OptionsError(f"options.{path}", f"{provider} option {path!r}: {first['msg']}") from exc
    dumped: dict[str, Any] = checked.model_dump(mode="json", exclude_unset=True)
    return dumped


def parse_options(role: Role, provider: str, options: dict[str, Any]) -> Any:
    """The typed options of an already validated agent (defaults filled in), for building the engine."""
    return PROVIDER_OPTIONS[role][provider].model_validate(options)
