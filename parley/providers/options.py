"""What an agent may set for each provider: an allow-list with bounds, per role and provider.

An agent's configuration is tenant input (``POST /v1/agents``), so it is data and never host
configuration: programs, model files and directories, base URLs, thread counts and context sizes are the
operator's (``PARLEY_*`` settings, see ``parley.config``). Anything not listed here is refused with an error
that names the field, and the number ranges keep every session's cost bounded.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from parley.inputs import JsonObject, SafeStr

Role = Literal["asr", "llm", "tts", "vad", "s2s"]

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
    model: Literal["tiny.en", "base"] = "base"
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")] | None = "en"
    """None (with the multilingual ``base``): detected per utterance, among ``languages``."""
    languages: list[Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")]] = Field(
        default_factory=list, max_length=20
    )
    """What detection chooses among (empty: any of Whisper's); an agent's ``language: auto`` sets it."""
    beam_size: int = Field(1, ge=1, le=5)
    initial_prompt: Annotated[SafeStr, Field(max_length=500)] | None = None
    hotwords: Annotated[SafeStr, Field(max_length=500)] | None = None


class ScriptedAsrOptions(_Options):
    """The deterministic test recogniser: hears the given lines in order, whatever the audio."""

    lines: list[SafeText] = Field(default_factory=list, max_length=500)
    seconds_per_word: float = Field(0.3, gt=0, le=5)


class DeepgramAsrOptions(_Options):
    """Deepgram live transcription (``parley/providers/asr/deepgram.py``); host and timeouts are the
    operator's (PARLEY_DEEPGRAM_BASE_URL, PARLEY_DEEPGRAM_*_TIMEOUT_S)."""

    model: Literal[
        "nova-3",
        "nova-3-general",
        "nova-3-medical",
        "nova-2",
        "nova-2-general",
        "nova-2-meeting",
        "nova-2-finance",
        "nova-2-conversationalai",
        "nova-2-voicemail",
        "nova-2-video",
        "nova-2-medical",
        "nova-2-drivethru",
        "nova-2-automotive",
    ] = "nova-3"
    language: Annotated[str, StringConstraints(pattern=r"^(multi|[a-z]{2,3}(-[A-Za-z0-9]{2,8})?)$")] = "en"
    encoding: Literal["linear16", "mulaw"] = "linear16"
    """What goes on the wire; ``mulaw`` (with ``sample_rate: 8000``) is a phone line's own format."""
    sample_rate: Literal[8000, 16000] = 16000
    interim_results: bool = True
    endpointing_ms: int | None = Field(300, ge=10, le=5000)
    """Silence after which Deepgram closes a segment (``speech_final``); null turns it off. Parley's own
    turn-taking still decides when a turn ends."""
    utterance_end_ms: int | None = Field(None, ge=1000, le=5000)
    vad_events: bool = False
    punctuate: bool = True
    smart_format: bool = False
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key; default: PARLEY_DEEPGRAM_API_KEY."""

    @model_validator(mode="after")
    def _consistent(self) -> DeepgramAsrOptions:
        if self.encoding == "mulaw" and self.sample_rate != 8000:
            raise ValueError("encoding mulaw is sent at sample_rate 8000 (a phone line's rate)")
        if self.utterance_end_ms is not None and not self.interim_results:
            raise ValueError("utterance_end_ms needs interim_results (Deepgram finds the gap in them)")
        return self


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
    first_token_timeout_ms: int | None = Field(None, ge=200, le=30_000)
    """No first token by then: the provider counts as unavailable and the agent's fallbacks answer;
    default (and upper bound): the operator's PARLEY_OPENAI_FIRST_TOKEN_MS."""


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
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")] | None = None
    """A voice of this language from the operator's PARLEY_PIPER_VOICES; default: the packaged English one."""
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


class DeepgramTtsOptions(_Options):
    """Deepgram Aura (``parley/providers/tts/deepgram.py``): its streaming socket, or the REST endpoint."""

    model: Annotated[str, StringConstraints(pattern=r"^aura-[a-z0-9]{1,12}(-[a-z0-9]{1,12}){1,3}$")] = (
        "aura-2-thalia-en"
    )
    """An Aura voice, e.g. aura-2-thalia-en, aura-2-celeste-es, aura-2-julius-de."""
    encoding: Literal["linear16", "mulaw"] = "linear16"
    sample_rate: Literal[8000, 16000, 24000, 48000] = 24000
    transport: Literal["websocket", "rest"] = "websocket"
    """``rest``: one streamed POST per phrase, when a socket cannot be kept (a proxy that breaks them)."""
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key; default: PARLEY_DEEPGRAM_API_KEY."""

    @model_validator(mode="after")
    def _consistent(self) -> DeepgramTtsOptions:
        if self.encoding == "mulaw" and self.sample_rate not in (8000, 16000):
            raise ValueError("encoding mulaw comes at sample_rate 8000 or 16000")
        return self


# --- ElevenLabs voice, OpenAI voice and transcription (hosts and timeouts: PARLEY_ELEVENLABS_*, ----------
# --- PARLEY_OPENAI_BASE_URL / _TIMEOUT_S) -----------------------------------------------------------------


class ElevenLabsTtsOptions(_Options):
    """ElevenLabs input-streaming voice (``parley/providers/tts/elevenlabs.py``), with character timings."""

    voice_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{8,40}$")] = "21m00Tcm4TlvDq8ikWAM"
    """A voice of the key's ElevenLabs account or library (the default is the premade "Rachel")."""
    model: Literal[
        "eleven_flash_v2_5",
        "eleven_turbo_v2_5",
        "eleven_multilingual_v2",
        "eleven_flash_v2",
        "eleven_turbo_v2",
    ] = "eleven_flash_v2_5"
    sample_rate: Literal[16000, 22050, 24000] = 16000
    """PCM rate asked for (``output_format=pcm_<rate>``)."""
    language_code: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] | None = None
    """ISO 639-1 language the flash/turbo v2.5 models should speak in."""
    stability: float | None = Field(None, ge=0, le=1)
    similarity_boost: float | None = Field(None, ge=0, le=1)
    speed: float | None = Field(None, ge=0.7, le=1.2)
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key; default: PARLEY_ELEVENLABS_API_KEY."""


class OpenAITtsOptions(_Options):
    """OpenAI speech (``parley/providers/tts/openai_tts.py``) at PARLEY_OPENAI_BASE_URL."""

    model: ModelName = "gpt-4o-mini-tts"
    """One of the operator's PARLEY_OPENAI_TTS_MODELS."""
    voice: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] = "alloy"
    speed: float | None = Field(None, ge=0.25, le=4.0)
    instructions: Annotated[SafeStr, Field(max_length=1000)] | None = None
    """How to speak (tone, pace); gpt-4o-mini-tts only."""
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key; default: PARLEY_OPENAI_API_KEY."""


class OpenAITranscribeOptions(_Options):
    """An OpenAI-compatible transcription endpoint (``parley/providers/asr/openai_transcribe.py``)."""

    model: ModelName = "gpt-4o-mini-transcribe"
    """One of the operator's PARLEY_OPENAI_TRANSCRIPTION_MODELS."""
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")] | None = "en"
    """ISO 639-1 language of the caller; null lets the model detect it."""
    prompt: Annotated[SafeStr, Field(max_length=500)] | None = None
    """Context that steers the transcript (names, style); the call's vocabulary is added to it."""
    interim: bool = False
    """Send the audio so far for each interim the session asks for (billed again), instead of none."""
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key; default: PARLEY_OPENAI_API_KEY."""


# --- speech to speech (``mode: speech_to_speech``) ---------------------------------------------------


class OpenAIRealtimeOptions(_Options):
    """OpenAI Realtime (``parley/providers/s2s/openai_realtime.py``); host and timeouts are the operator's
    (PARLEY_OPENAI_REALTIME_URL, PARLEY_OPENAI_REALTIME_TIMEOUT_S)."""

    model: Literal[
        "gpt-realtime",
        "gpt-realtime-mini",
        "gpt-4o-realtime-preview",
        "gpt-4o-mini-realtime-preview",
    ] = "gpt-realtime"
    voice: Literal[
        "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar"
    ] = "marin"
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key; default: the operator's
    PARLEY_OPENAI_API_KEY."""
    turn_detection: Literal["server_vad", "semantic_vad"] = "server_vad"
    vad_threshold: float = Field(0.5, ge=0, le=1)
    silence_duration_ms: int = Field(500, ge=100, le=3000)
    prefix_padding_ms: int = Field(300, ge=0, le=2000)
    transcription_model: Literal["whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"] = (
        "gpt-4o-mini-transcribe"
    )
    max_output_tokens: int = Field(1024, ge=1, le=4096)


ConvaiVariable = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
ConvaiValue = Annotated[SafeStr, Field(max_length=500)] | int | float | bool


class ElevenLabsConvaiOptions(_Options):
    """ElevenLabs Conversational AI (``parley/providers/s2s/elevenlabs_convai.py``): an agent made in
    ElevenLabs, whose client tools carry Parley's tools; host and timeouts are the operator's
    (PARLEY_ELEVENLABS_BASE_URL, PARLEY_ELEVENLABS_CONVAI_*)."""

    agent_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{4,64}$")]
    """The ElevenLabs agent (``agent_…``)."""
    override_prompt: bool = True
    """Send Parley's rendered system prompt (knowledge and notes included) as the agent's prompt; the
    agent must allow the prompt override in its security settings."""
    override_first_message: bool = True
    """Send the Parley agent's first message (when it has one) as the agent's first message."""
    override_language: bool = True
    """Send the Parley agent's language (when it fixes one) as the conversation's language."""
    voice_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{8,40}$")] | None = None
    """A voice to speak with instead of the agent's own (the voice override must be allowed)."""
    dynamic_variables: dict[ConvaiVariable, ConvaiValue] = Field(default_factory=dict, max_length=32)
    """Values for the ``{{placeholders}}`` of the agent's own prompt and first message."""
    api_key_secret: SecretName | None = None
    """The name of an organization secret holding the API key; default: PARLEY_ELEVENLABS_API_KEY; with
    neither, the agent must be public."""


PROVIDER_OPTIONS: dict[Role, dict[str, type[_Options]]] = {
    "vad": {"silero": SileroOptions, "webrtc": WebRtcVadOptions, "energy": EnergyVadOptions},
    "asr": {
        "whisper": WhisperOptions,
        "scripted": ScriptedAsrOptions,
        "deepgram": DeepgramAsrOptions,
        "openai": OpenAITranscribeOptions,
    },
    "llm": {"llamacpp": LlamaCppOptions, "openai": OpenAIOptions, "scripted": ScriptedLlmOptions},
    "tts": {
        "piper": PiperOptions,
        "espeak": EspeakOptions,
        "tone": ToneOptions,
        "deepgram": DeepgramTtsOptions,
        "elevenlabs": ElevenLabsTtsOptions,
        "openai": OpenAITtsOptions,
    },
    "s2s": {"openai_realtime": OpenAIRealtimeOptions, "elevenlabs_convai": ElevenLabsConvaiOptions},
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
