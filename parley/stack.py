"""Build an EngineStack from an agent's provider settings: the embedded offline models by default.

Models are loaded once per process and shared by every session (keyed by provider and options); only
the VAD, which carries per-stream state, is made per session.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from parley.audio.vad import VoiceActivityDetector
from parley.config import Settings, get_settings
from parley.engine.agent import AgentConfig, ProviderSettings, ToolSettings
from parley.engine.chunker import fixed_clauses
from parley.engine.session import EngineStack
from parley.engine.tools import (
    DTMF_PATTERN,
    CallContext,
    HasCodeTools,
    Tool,
    ToolRegistry,
    ToolResult,
    object_schema,
    static_tool,
)
from parley.engine.transport import CallControls, ControlUnavailable
from parley.engine.turns import EndOfTurnModel
from parley.providers.asr.base import SpeechRecognizer
from parley.providers.embeddings.base import SentenceEmbedder
from parley.providers.llm.base import LanguageModel
from parley.providers.options import (
    EnergyVadOptions,
    EspeakOptions,
    LlamaCppOptions,
    OpenAIOptions,
    PiperOptions,
    Role,
    ScriptedAsrOptions,
    ScriptedLlmOptions,
    SileroOptions,
    ToneOptions,
    WebRtcVadOptions,
    WhisperOptions,
    parse_options,
)
from parley.providers.registry import (
    BuildRequest,
    ProviderEntry,
    ProviderError,
    provider,
    register_provider,
)
from parley.providers.tts.base import SpeechSynthesizer
from parley.providers.tts.phrase_cache import PhraseCache

__all__ = [
    "ProviderEntry",
    "ProviderError",
    "build_stack",
    "build_tools",
    "prepare_stack",
    "register_provider",
]

Secrets = Mapping[str, str]
"""An organization's secrets by name, already decrypted: what ``api_key_secret`` options refer to."""

_cache: dict[str, Any] = {}


# --- the built-in providers, registered by name (``parley.providers.registry``) -------------------------


def _silero(_: BuildRequest) -> Callable[[], VoiceActivityDetector]:
    from parley.audio.silero import SileroVAD

    return lambda: SileroVAD()


def _webrtc_vad(request: BuildRequest) -> Callable[[], VoiceActivityDetector]:
    from parley.audio.webrtc_vad import WebRTCVAD

    options: WebRtcVadOptions = request.options
    return lambda: WebRTCVAD(aggressiveness=options.aggressiveness)


def _energy_vad(request: BuildRequest) -> Callable[[], VoiceActivityDetector]:
    from parley.audio.vad import EnergyVAD

    options: EnergyVadOptions = request.options
    return lambda: EnergyVAD(threshold_dbfs=options.threshold_dbfs, softness_db=options.softness_db)


def _whisper(request: BuildRequest) -> SpeechRecognizer:
    from parley.providers.asr.whisper import WhisperRecognizer

    options: WhisperOptions = request.options
    host = request.host
    model_dir: Path | None = host.whisper_model_dir
    if options.model == "base":
        from parley.providers.assets import whisper_base_dir

        model_dir = whisper_base_dir()
    return WhisperRecognizer(
        model_dir,
        cpu_threads=host.model_threads,
        compute_type=host.whisper_compute_type,
        beam_size=options.beam_size,
        language=options.language,
        initial_prompt=options.initial_prompt,
        hotwords=options.hotwords,
    )


def _scripted_asr(request: BuildRequest) -> SpeechRecognizer:
    from parley.providers.asr.scripted import ScriptedRecognizer

    options: ScriptedAsrOptions = request.options
    return ScriptedRecognizer(list(options.lines), seconds_per_word=options.seconds_per_word)


def _openai_key(options: OpenAIOptions, host: Settings, secrets: Secrets) -> str | None:
    if options.api_key_secret is not None:
        if options.api_key_secret not in secrets:
            raise ProviderError(
                f"llm.options.api_key_secret: the organization has no secret named {options.api_key_secret!r}"
            )
        return secrets[options.api_key_secret]
    return host.openai_api_key.get_secret_value() if host.openai_api_key is not None else None


def check_operator_policy(agent: AgentConfig, host: Settings | None = None) -> None:
    """What only the operator's settings can tell: raise ``ProviderError`` for a choice they forbid."""
    host = host or get_settings()
    if agent.llm.provider == "openai":
        model = agent.llm.options.get("model")
        if model not in host.openai_models:
            raise ProviderError(
                f"llm.options.model: {model!r} is not offered on this server "
                f"(PARLEY_OPENAI_MODELS: {', '.join(host.openai_models)})"
            )


def _llamacpp(request: BuildRequest) -> LanguageModel:
    from parley.providers.assets import EMBEDDED_LLMS
    from parley.providers.llm.llamacpp import LlamaCppModel

    options: LlamaCppOptions = request.options
    host = request.host
    packaged, chat = EMBEDDED_LLMS[options.model]
    if host.llamacpp_model_path is not None:
        path, chat = host.llamacpp_model_path, host.llamacpp_chat
    else:
        path = packaged()
    return LlamaCppModel(
        path,
        chat=chat,
        n_ctx=host.llamacpp_n_ctx,
        n_threads=host.model_threads,
        n_batch=host.llamacpp_n_batch,
        seed=options.seed,
    )


def _openai(request: BuildRequest) -> LanguageModel:
    from parley.providers.llm.openai_compat import OpenAICompatibleModel

    options: OpenAIOptions = request.options
    host = request.host
    return OpenAICompatibleModel(
        host.openai_base_url,
        options.model,
        _openai_key(options, host, request.secrets),
        timeout=host.openai_timeout_s,
    )


def _openai_secrets(options: OpenAIOptions) -> list[str]:
    return [options.api_key_secret] if options.api_key_secret is not None else []


def _scripted_llm(request: BuildRequest) -> LanguageModel:
    from parley.providers.llm.scripted import ScriptedModel, ScriptRule

    options: ScriptedLlmOptions = request.options
    rules = [ScriptRule(**rule.model_dump()) for rule in options.rules]
    return ScriptedModel(rules, default_reply=options.default_reply, token_delay=options.token_delay)


def _piper(request: BuildRequest) -> SpeechSynthesizer:
    from parley.providers.tts.piper import PiperSynthesizer

    options: PiperOptions = request.options
    host = request.host
    voice = host.piper_voice
    return PiperSynthesizer(
        voice,
        voice.with_suffix(voice.suffix + ".json") if voice is not None else None,
        threads=host.model_threads,
        length_scale=options.length_scale,
        volume=options.volume,
        speaker_id=options.speaker_id,
    )


def _espeak(request: BuildRequest) -> SpeechSynthesizer:
    from parley.providers.tts.espeak import EspeakSynthesizer

    options: EspeakOptions = request.options
    return EspeakSynthesizer(options.voice, options.rate_wpm, program=request.host.espeak_program)


def _tone(request: BuildRequest) -> SpeechSynthesizer:
    from parley.providers.tts.tone import ToneSynthesizer

    options: ToneOptions = request.options
    return ToneSynthesizer(
        options.sample_rate,
        options.ms_per_char,
        chunk_ms=options.chunk_ms,
        frequency=options.frequency,
        amplitude=options.amplitude,
    )


for _entry in (
    ProviderEntry("vad", "silero", _silero, SileroOptions),
    ProviderEntry("vad", "webrtc", _webrtc_vad, WebRtcVadOptions),
    ProviderEntry("vad", "energy", _energy_vad, EnergyVadOptions),
    ProviderEntry("asr", "whisper", _whisper, WhisperOptions),
    ProviderEntry("asr", "scripted", _scripted_asr, ScriptedAsrOptions),
    ProviderEntry("llm", "llamacpp", _llamacpp, LlamaCppOptions),
    ProviderEntry("llm", "openai", _openai, OpenAIOptions, _openai_secrets),
    ProviderEntry("llm", "scripted", _scripted_llm, ScriptedLlmOptions),
    ProviderEntry("tts", "piper", _piper, PiperOptions),
    ProviderEntry("tts", "espeak", _espeak, EspeakOptions),
    ProviderEntry("tts", "tone", _tone, ToneOptions),
):
    register_provider(_entry)


def _key(kind: str, settings: ProviderSettings, *extra: str) -> str:
    options = json.dumps(settings.options, sort_keys=True, default=str)
    return ":".join([kind, settings.provider, options, *extra])


def _engine(
    role: Role,
    settings: ProviderSettings,
    host: Settings,
    secrets: Secrets,
    wrap: Callable[[Any], Any] = lambda engine: engine,
) -> Any:
    """The engine for one role, shared by every session asking for the same thing. One built with an
    organization's secrets is never shared with another: their digest is part of the key."""
    entry = provider(role, settings.provider)
    options = parse_options(role, settings.provider, settings.options)
    wanted = {name: secrets.get(name) for name in entry.secret_names(options)}
    digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest() if wanted else ""
    request = BuildRequest(options, host, {k: v for k, v in wanted.items() if v is not None})
    return _shared(_key(role, settings, digest), lambda: wrap(entry.factory(request)))


def _turn_model(agent: AgentConfig) -> EndOfTurnModel | None:
    if not agent.endpointing.semantic or agent.vad.provider == "energy":
        return None
    from parley.audio.turn import SmartTurnDetector, SmartTurnModelMissing

    try:
        return SmartTurnDetector()
    except SmartTurnModelMissing:
        return None


def _wants_embedder(agent: AgentConfig) -> bool:
    """A grounded agent on a real model checks questions against its knowledge (``engine/grounding``);
    a scripted model needs no such check, and its tests no embedding model."""
    return agent.grounded and agent.llm.provider != "scripted"


def _embedder() -> SentenceEmbedder:
    from parley.providers.assets import minilm_files
    from parley.providers.embeddings.minilm import MiniLMEmbedder

    return MiniLMEmbedder(*minilm_files())


def _shared(key: str, make: Callable[[], Any]) -> Any:
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def build_stack(agent: AgentConfig, secrets: Secrets | None = None) -> EngineStack:
    """Load (or reuse) the models the agent asks for. Blocking: call it off the event loop."""
    host = get_settings()
    check_operator_policy(agent, host)
    found = secrets or {}
    return EngineStack(
        vad_factory=_engine("vad", agent.vad, host, found),
        recognizer=_engine("asr", agent.asr, host, found),
        llm=_engine("llm", agent.llm, host, found),
        tts=_engine("tts", agent.tts, host, found, wrap=PhraseCache),
        turn_model=_shared(
            f"turn:{agent.endpointing.semantic}:{agent.vad.provider}", lambda: _turn_model(agent)
        ),
        embedder=_shared("embedder", _embedder) if _wants_embedder(agent) else None,
    )


async def prepare_stack(agent: AgentConfig, secrets: Secrets | None = None) -> EngineStack:
    """Load and warm every model so the first turn is as fast as the rest."""
    stack = await asyncio.to_thread(build_stack, agent, secrets)
    await stack.recognizer.warm_up()
    await stack.tts.warm_up()
    await stack.llm.warm_up()
    await prime_agent(stack, agent)
    vad = stack.vad_factory()
    import numpy as np

    vad.probability(np.zeros(vad.frame_samples, np.int16))
    return stack


async def prime_agent(stack: EngineStack, agent: AgentConfig) -> None:
    """Evaluate the agent's own prompt prefix once, so its first turn reuses the model's prompt cache."""
    from parley.engine.context import ConversationContext, grounding_examples

    tools = build_tools(agent)
    context = ConversationContext(
        agent.system_prompt,
        agent.knowledge,
        agent.context_token_budget,
        stack.llm.count_tokens,
        grounded=agent.grounded,
        examples=grounding_examples(tools.closing_tool()),
    )
    await stack.llm.warm_up([context.system_message(), *context.examples], tools.specs() or None)
    await warm_greeting(stack, agent)


async def warm_greeting(stack: EngineStack, agent: AgentConfig) -> None:
    """Synthesize the agent's first message ahead, clause by clause as a reply will ask for it, so a
    caller hears it the moment the call connects."""
    if agent.first_message and isinstance(stack.tts, PhraseCache):
        await stack.tts.warm(fixed_clauses(agent.first_message))


def build_tools(
    agent: AgentConfig,
    controls: CallControls | None = None,
    *,
    context: CallContext | None = None,
    secrets: Secrets | None = None,
) -> ToolRegistry:
    """The tools of one call: the agent's configured ones (built-ins, static) and, for an agent defined
    in Python, its functions. ``context`` is what their handlers learn of the call; built-ins that act on
    the line (transfer, keypad tones) go through its ``controls``."""
    if context is None:
        context = CallContext(controls=controls or CallControls())
    elif controls is not None:
        context.controls = controls
    registry = ToolRegistry(filler=agent.tool_filler)
    for settings in agent.tools:
        if settings.kind == "webhook":  # secrets: the organization's, named by ``webhook_secret_names``
            registry.register(_webhook(settings, context, secrets or {}))
            continue
        registry.register(_tool(settings, context))
    if isinstance(agent, HasCodeTools):
        for make in agent.code_tools():
            registry.register(make(context))
    return registry


def _webhook(settings: ToolSettings, context: CallContext, secrets: Secrets) -> Tool:
    from parley.webhooks.guard import UrlPolicy
    from parley.webhooks.tool import WebhookContext, webhook_tool

    host = get_settings()
    return webhook_tool(
        settings,
        WebhookContext(UrlPolicy.from_settings(host), secrets, host.webhook_max_response_bytes, call=context),
    )


def _tool(settings: ToolSettings, context: CallContext) -> Tool:
    if settings.kind == "static":
        return static_tool(settings)
    builtin = BUILTIN_TOOLS.get(settings.name)
    if builtin is None:
        raise ProviderError(
            f"unknown built-in tool '{settings.name}' (built-ins: {', '.join(sorted(BUILTIN_TOOLS))}; "
            "or use kind: static)"
        )
    return builtin(settings, context)


def _end_call(settings: ToolSettings, _: CallContext) -> Tool:
    """Hang up once the goodbye said before it was heard."""

    async def end_call(_: dict[str, Any]) -> ToolResult:
        return ToolResult({"ended": True}, end_call=True)

    return Tool(
        "end_call",
        settings.description or "End the call.",
        settings.parameters,
        end_call,
        settings.timeout_s,
        side_effect=True,
        filler=False,
        closes_call=True,
    )


def _send_dtmf(settings: ToolSettings, context: CallContext) -> Tool:
    """Press keys on the far end's keypad (an automated menu, an extension), once what was said before
    was heard."""

    async def send_dtmf(arguments: dict[str, Any]) -> dict[str, Any]:
        digits = arguments["digits"]
        try:
            await context.controls.send_dtmf(digits)
        except ControlUnavailable as exc:
            raise RuntimeError(f"{exc}; tell the caller you cannot press keys on this call") from exc
        return {"sent": digits}

    return Tool(
        "send_dtmf",
        settings.description
        or "Press keys on the phone keypad, for an automated menu or an extension (e.g. '1' or '204#').",
        object_schema(
            {
                "digits": {
                    "type": "string",
                    "pattern": DTMF_PATTERN,
                    "description": "the keys to press, in order: 0-9, * and #",
                }
            },
            ["digits"],
        ),
        send_dtmf,
        settings.timeout_s,
        side_effect=True,
        filler=False,
    )


def _transfer_call(settings: ToolSettings, context: CallContext) -> Tool:
    """Send the caller on to one of the agent's configured destinations. The model only ever names one
    (an enum in the schema): a number it made up, or one a caller talked it into, cannot be dialed."""
    destinations = dict(settings.destinations)
    names = sorted(destinations)

    async def transfer_call(arguments: dict[str, Any]) -> dict[str, Any]:
        name = arguments["destination"]
        try:
            await context.controls.transfer(destinations[name])
        except ControlUnavailable as exc:
            raise RuntimeError(f"{exc}; tell the caller you cannot transfer them") from exc
        return {"transferred": True, "destination": name}

    return Tool(
        "transfer_call",
        settings.description
        or "Transfer the caller to a person or team. Say goodbye first; the call leaves you once it is sent.",
        {
            "type": "object",
            "properties": {
                "destination": {"type": "string", "enum": names, "description": "where to send the call"}
            },
            "required": ["destination"],
            "additionalProperties": False,
        },
        transfer_call,
        settings.timeout_s,
        side_effect=True,
        filler=False,
    )


BUILTIN_TOOLS: dict[str, Callable[[ToolSettings, CallContext], Tool]] = {
    "end_call": _end_call,
    "transfer_call": _transfer_call,
    "send_dtmf": _send_dtmf,
}
"""Built-in tools by name: ordinary tools that act on the call through their result or context."""
