"""Agent configuration: who the agent is and how it listens, thinks and speaks (YAML or Python)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from parley.engine.analysis_settings import AnalysisSettings
from parley.engine.coaching import CoachingSettings
from parley.engine.messages import (
    DEFAULT_MAX_PER_CALL,
    MAX_PER_CALL,
    MESSAGE_TOOLS,
    Recipient,
    recipients_problem,
)
from parley.engine.schema_checks import UnsupportedSchema, check_schema, without_patterns
from parley.engine.variables import PromptTemplateError, check_template
from parley.inputs import CallTarget, JsonObject, PlainJson, PlainName, SafeStr
from parley.providers.languages import LANGUAGES
from parley.providers.options import OptionsError, Role, validate_options

# Caps on what an agent may say and hold. An agent is tenant input (POST /v1/agents) and goes whole into
# every prompt, so each text has a ceiling, generous for hand-written agents; numbers are finite.
MAX_MS = 60_000
AgentName = Annotated[PlainName, Field(min_length=1, max_length=100)]
Fact = Annotated[SafeStr, Field(max_length=4000)]
SpokenLine = Annotated[SafeStr, Field(max_length=1000)]
DestinationName = Annotated[SafeStr, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_. -]+$")]
HeaderName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
SecretName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "user-agent",
        "parley-signature",
        "parley-call-id",
    }
)
"""Headers of a webhook tool's request that Parley sets (lower case): none may be configured."""


def _known_language(code: str) -> str:
    if code not in LANGUAGES:
        raise PydanticCustomError(
            "language",
            "unknown language '{code}' (one of: {known})",
            {"code": code, "known": ", ".join(LANGUAGES)},
        )
    return code


LanguageCode = Annotated[
    str, AfterValidator(_known_language), Field(description="an ISO 639-1 code Parley has a voice for")
]


class EndpointingSettings(BaseModel):
    """When the user's turn is over. Times in milliseconds."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    start_threshold: float = Field(0.5, ge=0, le=1, description="VAD probability that opens speech")
    stop_threshold: float = Field(0.35, ge=0, le=1, description="VAD probability below which speech pauses")
    min_speech_ms: int = Field(
        64, ge=0, le=MAX_MS, description="voiced time needed before speech counts as started"
    )
    pause_ms: int = Field(
        96, ge=0, le=MAX_MS, description="silence that marks a pause; a speculative reply starts here"
    )
    min_silence_ms: int = Field(
        500, ge=0, le=MAX_MS, description="silence that ends a turn that is clearly complete"
    )
    unsure_silence_ms: int = Field(
        800, ge=0, le=MAX_MS, description="silence that ends a turn of uncertain completeness"
    )
    max_silence_ms: int = Field(1400, ge=0, le=MAX_MS, description="silence that ends any turn")
    semantic: bool = Field(True, description="use the end-of-turn model and transcript to pick the silence")
    learn_pauses: bool = Field(
        True,
        description="after the caller goes on past a pause, wait half as long again (at most "
        "unsure_silence_ms) before ending even a turn that sounds complete",
    )


class InterruptionSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = True
    min_words: int = Field(1, ge=0, le=100, description="real words needed to confirm a barge-in")
    merge_window_ms: int = Field(
        2000,
        ge=0,
        le=MAX_MS,
        description="a user who speaks again this soon after their own last word had only paused, even if "
        "the agent already started answering: the new words join that turn and the answer is dropped",
    )
    merge_heard_ms: int = Field(
        600,
        ge=0,
        le=MAX_MS,
        description="…as long as no more of the answer than this had played: a user who heard more was "
        "answering it (a reaction takes half a second), and their words are a turn of their own",
    )
    backchannels: list[Annotated[SafeStr, Field(min_length=1, max_length=50)]] = Field(
        max_length=200,
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
        ],
    )


MAX_FALLBACKS = 3
FALLBACK_ROLES: frozenset[str] = frozenset({"asr", "llm", "tts"})


class FallbackSettings(BaseModel):
    """One provider of a role's fallback chain (same shape as the primary, without fallbacks of its own)."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(max_length=40)
    options: dict[str, Any] = Field(default_factory=dict)


class ProviderSettings(BaseModel):
    """Which engine to use for a role, and its options: an allow-list per provider, with bounds
    (``parley.providers.options``). Hosts, paths, programs and sizes are operator settings."""

    model_config = ConfigDict(extra="forbid")
    role: ClassVar[Role | None] = None

    provider: str = Field(max_length=40)
    options: dict[str, Any] = Field(default_factory=dict)
    fallbacks: list[FallbackSettings] = Field(
        default_factory=list,
        max_length=MAX_FALLBACKS,
        description="for asr, llm and tts: providers asked in order when the ones before are unavailable "
        "(refused, timed out, no first token in time) before their answer began (docs/providers.md)",
    )

    @model_validator(mode="after")
    def _allowed_options(self) -> ProviderSettings:
        if self.role is not None:
            if self.fallbacks and self.role not in FALLBACK_ROLES:
                raise PydanticCustomError("fallbacks", "{role} has no fallbacks", {"role": self.role})
            chain: list[ProviderSettings | FallbackSettings] = [self, *self.fallbacks]
            for index, chosen in enumerate(chain):
                where = "" if index == 0 else f"fallbacks.{index - 1}."
                try:
                    chosen.options = validate_options(self.role, chosen.provider, chosen.options)
                except OptionsError as exc:
                    raise PydanticCustomError(
                        "provider_option",
                        "{field}: {detail}",
                        {"field": where + exc.field, "detail": str(exc)},
                    ) from exc
        return self


class VadSettings(ProviderSettings):
    role: ClassVar[Role | None] = "vad"


class AsrSettings(ProviderSettings):
    role: ClassVar[Role | None] = "asr"


class LlmSettings(ProviderSettings):
    role: ClassVar[Role | None] = "llm"


class TtsSettings(ProviderSettings):
    role: ClassVar[Role | None] = "tts"


class S2sSettings(ProviderSettings):
    """The speech-to-speech engine of an agent in ``mode: speech_to_speech`` (``openai_realtime`` …)."""

    role: ClassVar[Role | None] = "s2s"


class ToolSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: PlainName = Field(min_length=1, max_length=64)
    description: SafeStr = Field("", max_length=2000)
    parameters: JsonObject = Field(default_factory=lambda: {"type": "object", "properties": {}})
    timeout_s: float = Field(5.0, gt=0, le=300)
    side_effect: bool = False
    kind: Literal["builtin", "static", "webhook"] = "builtin"
    result: PlainJson = None
    """For ``static`` tools: the result returned to the model (handy for demos and tests)."""
    url: SafeStr | None = Field(
        None, max_length=2000, description="for `webhook` tools: the https URL called (signed, JSON)"
    )
    method: Literal["POST", "PUT", "PATCH", "GET"] = "POST"
    headers: dict[HeaderName, SecretName] = Field(
        default_factory=dict,
        max_length=20,
        description="for `webhook` tools: request headers, each the NAME of an organization secret whose "
        "value is sent (e.g. Authorization: booking_api_token); values never appear in the agent",
    )
    destinations: dict[DestinationName, CallTarget] = Field(
        default_factory=dict,
        max_length=20,
        description="for the built-in `transfer_call`: where the call may be sent, by name (E.164 number or "
        "sip: URI); the model picks a name, never a number",
    )
    recipients: dict[DestinationName, Recipient] = Field(
        default_factory=dict,
        max_length=20,
        description="for the built-ins `send_sms` (E.164 numbers) and `send_email` (email addresses): who "
        "may get a message, by name; the model picks a name, never an address",
    )
    to_caller: bool = Field(
        True,
        description="for `send_sms`/`send_email`: the model may also pick `caller`, the person on the call "
        "(their number; for email, the call's `metadata.email`)",
    )
    max_per_call: int = Field(
        DEFAULT_MAX_PER_CALL,
        ge=1,
        le=MAX_PER_CALL,
        description="for `send_sms`/`send_email`: messages a call sends at most",
    )

    @field_validator("parameters")
    @classmethod
    def _safe_parameters(cls, parameters: dict[str, Any]) -> dict[str, Any]:
        """Arguments are checked against this schema on the event loop, during the call, and a caller
        steers them: a ``$ref`` to nothing or to itself is refused now, when saved. A ``pattern`` is kept
        for the model and not enforced (``schema_checks.without_patterns``)."""
        try:
            check_schema(without_patterns(parameters))
        except UnsupportedSchema as exc:
            raise PydanticCustomError("tool_schema", "{detail}", {"detail": str(exc)}) from None
        return parameters

    @field_validator("headers")
    @classmethod
    def _configurable_headers(cls, headers: dict[str, str]) -> dict[str, str]:
        """A header Parley sets itself (the signature, the body's type …) would fail every call: refused
        when the agent is saved."""
        reserved = sorted(h for h in headers if h.lower() in RESERVED_HEADERS)
        if reserved:
            raise PydanticCustomError(
                "reserved_header",
                "{names} set by Parley and cannot be configured (reserved: {all})",
                {
                    "names": ", ".join(reserved) + (" is" if len(reserved) == 1 else " are"),
                    "all": ", ".join(sorted(RESERVED_HEADERS)),
                },
            )
        return headers

    @model_validator(mode="after")
    def _recipients_for_messages(self) -> ToolSettings:
        messages = self.kind == "builtin" and self.name in MESSAGE_TOOLS
        if messages:
            problem = recipients_problem(self.name, self.recipients, self.to_caller)
            if problem is not None:
                raise PydanticCustomError("message_recipients", problem)
        elif self.recipients or not self.to_caller or self.max_per_call != DEFAULT_MAX_PER_CALL:
            raise PydanticCustomError(
                "message_recipients",
                "recipients, to_caller and max_per_call are only for the built-ins send_sms and send_email",
            )
        return self

    @model_validator(mode="after")
    def _webhook_fields(self) -> ToolSettings:
        if self.kind == "webhook" and not self.url:
            raise PydanticCustomError("webhook_url", "a webhook tool needs a url")
        if self.kind != "webhook" and (self.url or self.headers):
            raise PydanticCustomError("webhook_url", "url and headers are only for webhook tools")
        if self.url and not re.match(r"^https?://[^\s/?#@]+([/?#]\S*)?$", self.url):
            raise PydanticCustomError("webhook_url", "url must be an http(s) URL without credentials")
        return self

    @model_validator(mode="after")
    def _destinations_for_transfer(self) -> ToolSettings:
        transfer = self.kind == "builtin" and self.name == "transfer_call"
        if transfer and not self.destinations:
            raise PydanticCustomError(
                "transfer_destinations", "transfer_call needs at least one entry in destinations"
            )
        if self.destinations and not transfer:
            raise PydanticCustomError(
                "transfer_destinations", "destinations are only for the built-in transfer_call tool"
            )
        return self


class TelephonySettings(BaseModel):
    """What the agent does on a phone line."""

    model_config = ConfigDict(extra="forbid")

    machine: Literal["hangup", "voicemail"] = Field(
        "hangup",
        description="an outbound call answered by a machine (answering-machine detection): hang up, or speak "
        "`voicemail_message` after the beep and then hang up",
    )
    voicemail_message: SpokenLine | None = None

    @model_validator(mode="after")
    def _message_for_voicemail(self) -> TelephonySettings:
        if self.machine == "voicemail" and not (self.voicemail_message or "").strip():
            raise PydanticCustomError("voicemail_message", "machine: voicemail needs a voicemail_message")
        return self


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: AgentName = "assistant"
    system_prompt: SafeStr = Field(
        "You are a friendly, helpful voice assistant. Answer briefly, in one or two short sentences.",
        max_length=20_000,
    )
    first_message: SpokenLine | None = None
    knowledge: list[Fact] = Field(
        default_factory=list, max_length=50, description="facts put into the prompt to ground answers"
    )
    grounded: bool = Field(
        True,
        description="with knowledge (facts or documents): answer questions from it alone, and say so when "
        "it does not tell, offering to take a message; false for a general assistant whose facts only help",
    )
    public: bool = Field(
        False,
        description="anyone may talk to this agent without a session token (the demo page's agent); "
        "such sessions are accounted to the agent's organization and marked as public",
    )
    language: LanguageCode | Literal["auto"] = Field(
        "en",
        description="the language of the call (es, de …): heard, answered and spoken in it; auto: detected "
        "on the caller's first turn, then the voice and the answers follow it",
    )
    languages: list[LanguageCode] = Field(
        default_factory=list,
        max_length=len(LANGUAGES),
        description="with language auto, the languages a caller may speak (detection picks among them); "
        "default: every language Parley has a voice for",
    )
    voices: dict[LanguageCode, TtsSettings] = Field(
        default_factory=dict,
        max_length=len(LANGUAGES),
        description="the voice for a language, over the built-in table (which keeps the agent's own tts "
        "where it speaks the language, else Piper or espeak-ng)",
    )
    asr: AsrSettings = Field(default_factory=lambda: AsrSettings(provider="whisper"))
    llm: LlmSettings = Field(default_factory=lambda: LlmSettings(provider="llamacpp"))
    tts: TtsSettings = Field(default_factory=lambda: TtsSettings(provider="piper"))
    mode: Literal["pipeline", "speech_to_speech"] = Field(
        "pipeline",
        description="pipeline: VAD, ASR, LLM and TTS in turn; speech_to_speech: one remote model hears and "
        "speaks (set `s2s`); asr then only transcribes supervisors, llm and tts are unused",
    )
    s2s: S2sSettings | None = None
    vad: VadSettings = Field(default_factory=lambda: VadSettings(provider="silero"))
    endpointing: EndpointingSettings = Field(default_factory=EndpointingSettings)
    interruption: InterruptionSettings = Field(default_factory=InterruptionSettings)
    tools: list[ToolSettings] = Field(default_factory=list, max_length=50)
    telephony: TelephonySettings = Field(default_factory=TelephonySettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    coaching: CoachingSettings = Field(default_factory=CoachingSettings)
    max_reply_tokens: int = Field(60, gt=0, le=4096)
    temperature: float = Field(0.0, ge=0, le=2)
    context_token_budget: int = Field(1200, gt=0, le=131_072)
    max_tool_rounds: int = Field(3, ge=0, le=10)
    tool_filler: SpokenLine | None = Field(
        "One moment, let me check.",
        description="said when a tool keeps the caller waiting more than a second; null: stay silent",
    )
    unknown_answer: SpokenLine = Field(
        "I'm sorry, I don't know that. Can I take a message?",
        description="a grounded agent says this when asked about something its knowledge is not about "
        "(checked by meaning, before its model's answer is spoken); empty to let the model answer",
    )
    error_message: SpokenLine = Field(
        "Sorry, I'm having trouble answering right now. Could you say that again?",
        description="spoken when the language model fails",
    )
    detail_question: SpokenLine | None = Field(
        "Could I have {detail}, please?",
        description="asked when the model calls a tool with a required name or day the caller never "
        "gave (the call is not run); {detail} is what is missing, e.g. 'your name', 'the day'; "
        "null: the model is told and answers",
    )
    goodbye_message: SpokenLine | None = Field(
        "Goodbye, have a nice day!",
        description="said when the agent hangs up with its closing tool (end_call) without having said "
        "goodbye, in place of asking the model for words; null: the model's words",
    )

    @model_validator(mode="after")
    def _s2s_engine(self) -> AgentConfig:
        if self.mode == "speech_to_speech" and self.s2s is None:
            raise PydanticCustomError("s2s", "mode: speech_to_speech needs s2s: {provider: …}")
        return self

    @model_validator(mode="after")
    def _prompt_templates(self) -> AgentConfig:
        """``{{caller.name}}`` and friends are filled per call; a typo or a forbidden construct fails here."""
        for name in ("system_prompt", "first_message"):
            try:
                check_template(getattr(self, name) or "")
            except PromptTemplateError as exc:
                raise PydanticCustomError(
                    "prompt_template", "{field}: {detail}", {"field": name, "detail": str(exc)}
                ) from exc
        return self


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
