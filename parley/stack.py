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
from parley.engine.tools import Tool, ToolRegistry, static_tool
from parley.engine.transport import CallControls, ControlUnavailable
from parley.engine.turns import EndOfTurnModel
from parley.providers.asr.base import SpeechRecognizer
from parley.providers.llm.base import LanguageModel
from parley.providers.options import (
    EnergyVadOptions,
    EspeakOptions,
    LlamaCppOptions,
    OpenAIOptions,
    PiperOptions,
    ScriptedAsrOptions,
    ScriptedLlmOptions,
    SileroOptions,
    ToneOptions,
    WebRtcVadOptions,
    WhisperOptions,
    parse_options,
)
from parley.providers.tts.base import SpeechSynthesizer
from parley.providers.tts.phrase_cache import PhraseCache


class ProviderError(ValueError):
    """An agent names a provider Parley does not have, or one that cannot start here."""


Secrets = Mapping[str, str]
"""An organization's secrets by name, already decrypted: what ``api_key_secret`` options refer to."""

_cache: dict[str, Any] = {}


def _key(kind: str, settings: ProviderSettings, *extra: str) -> str:
    options = json.dumps(settings.options, sort_keys=True, default=str)
    return ":".join([kind, settings.provider, options, *extra])


def _vad_factory(settings: ProviderSettings) -> Callable[[], VoiceActivityDetector]:
    options = parse_options("vad", settings.provider, settings.options)
    if isinstance(options, SileroOptions):
        from parley.audio.silero import SileroVAD

        return lambda: SileroVAD()
    if isinstance(options, WebRtcVadOptions):
        from parley.audio.webrtc_vad import WebRTCVAD

        return lambda: WebRTCVAD(aggressiveness=options.aggressiveness)
    if isinstance(options, EnergyVadOptions):
        from parley.audio.vad import EnergyVAD

        return lambda: EnergyVAD(threshold_dbfs=options.threshold_dbfs, softness_db=options.softness_db)
    raise ProviderError(f"unknown VAD provider '{settings.provider}' (choose silero, webrtc or energy)")


def _recognizer(settings: ProviderSettings, host: Settings) -> SpeechRecognizer:
    options = parse_options("asr", settings.provider, settings.options)
    if isinstance(options, WhisperOptions):
        from parley.providers.asr.whisper import WhisperRecognizer

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
    if isinstance(options, ScriptedAsrOptions):
        from parley.providers.asr.scripted import ScriptedRecognizer

        return ScriptedRecognizer(list(options.lines), seconds_per_word=options.seconds_per_word)
    raise ProviderError(f"unknown ASR provider '{settings.provider}' (choose whisper or scripted)")


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


def _language_model(settings: ProviderSettings, host: Settings, api_key: str | None) -> LanguageModel:
    """``api_key`` is the openai provider's, already resolved from the organization's secrets."""
    options = parse_options("llm", settings.provider, settings.options)
    if isinstance(options, LlamaCppOptions):
        from parley.providers.assets import gemma_gguf
        from parley.providers.llm.llamacpp import LlamaCppModel

        return LlamaCppModel(
            host.llamacpp_model_path or gemma_gguf(),
            n_ctx=host.llamacpp_n_ctx,
            n_threads=host.model_threads,
            n_batch=host.llamacpp_n_batch,
            seed=options.seed,
        )
    if isinstance(options, OpenAIOptions):
        from parley.providers.llm.openai_compat import OpenAICompatibleModel

        return OpenAICompatibleModel(
            host.openai_base_url,
            options.model,
            api_key,
            timeout=host.openai_timeout_s,
        )
    if isinstance(options, ScriptedLlmOptions):
        from parley.providers.llm.scripted import ScriptedModel, ScriptRule

        rules = [ScriptRule(**rule.model_dump()) for rule in options.rules]
        return ScriptedModel(rules, default_reply=options.default_reply, token_delay=options.token_delay)
    raise ProviderError(f"unknown LLM provider '{settings.provider}' (choose llamacpp, openai or scripted)")


def _synthesizer(settings: ProviderSettings, host: Settings) -> SpeechSynthesizer:
    options = parse_options("tts", settings.provider, settings.options)
    if isinstance(options, PiperOptions):
        from parley.providers.tts.piper import PiperSynthesizer

        voice = host.piper_voice
        return PiperSynthesizer(
            voice,
            voice.with_suffix(voice.suffix + ".json") if voice is not None else None,
            threads=host.model_threads,
            length_scale=options.length_scale,
            volume=options.volume,
            speaker_id=options.speaker_id,
        )
    if isinstance(options, EspeakOptions):
        from parley.providers.tts.espeak import EspeakSynthesizer

        return EspeakSynthesizer(options.voice, options.rate_wpm, program=host.espeak_program)
    if isinstance(options, ToneOptions):
        from parley.providers.tts.tone import ToneSynthesizer

        return ToneSynthesizer(
            options.sample_rate,
            options.ms_per_char,
            chunk_ms=options.chunk_ms,
            frequency=options.frequency,
            amplitude=options.amplitude,
        )
    raise ProviderError(f"unknown TTS provider '{settings.provider}' (choose piper, espeak or tone)")


def _turn_model(agent: AgentConfig) -> EndOfTurnModel | None:
    if not agent.endpointing.semantic or agent.vad.provider == "energy":
        return None
    from parley.audio.turn import SmartTurnDetector, SmartTurnModelMissing

    try:
        return SmartTurnDetector()
    except SmartTurnModelMissing:
        return None


def _shared(key: str, make: Callable[[], Any]) -> Any:
    if key not in _cache:
        _cache[key] = make()
    return _cache[key]


def build_stack(agent: AgentConfig, secrets: Secrets | None = None) -> EngineStack:
    """Load (or reuse) the models the agent asks for. Blocking: call it off the event loop."""
    host = get_settings()
    check_operator_policy(agent, host)
    api_key: str | None = None
    if agent.llm.provider == "openai":
        api_key = _openai_key(parse_options("llm", "openai", agent.llm.options), host, secrets or {})
    # Two organizations' keys never share a client: the key's digest is part of the cache key.
    llm_key = hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""
    return EngineStack(
        vad_factory=_vad_factory(agent.vad),
        recognizer=_shared(_key("asr", agent.asr), lambda: _recognizer(agent.asr, host)),
        llm=_shared(_key("llm", agent.llm, llm_key), lambda: _language_model(agent.llm, host, api_key)),
        tts=_shared(_key("tts", agent.tts), lambda: PhraseCache(_synthesizer(agent.tts, host))),
        turn_model=_shared(
            f"turn:{agent.endpointing.semantic}:{agent.vad.provider}", lambda: _turn_model(agent)
        ),
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
    from parley.engine.context import ConversationContext

    context = ConversationContext(
        agent.system_prompt, agent.knowledge, agent.context_token_budget, stack.llm.count_tokens
    )
    await stack.llm.warm_up([context.system_message()], build_tools(agent).specs() or None)
    await warm_greeting(stack, agent)


async def warm_greeting(stack: EngineStack, agent: AgentConfig) -> None:
    """Synthesize the agent's first message ahead, clause by clause as a reply will ask for it, so a
    caller hears it the moment the call connects."""
    if agent.first_message and isinstance(stack.tts, PhraseCache):
        await stack.tts.warm(fixed_clauses(agent.first_message))


def build_tools(agent: AgentConfig, controls: CallControls | None = None) -> ToolRegistry:
    """The agent's tools; built-ins that act on the line (transfer) go through ``controls``."""
    registry = ToolRegistry()
    for settings in agent.tools:
        registry.register(_tool(settings, controls or CallControls()))
    return registry


def _tool(settings: ToolSettings, controls: CallControls) -> Tool:
    if settings.kind == "static":
        return static_tool(settings)
    if settings.name == "end_call":

        async def end_call(_: dict[str, Any]) -> dict[str, bool]:
            return {"ended": True}

        return Tool(
            "end_call",
            settings.description or "End the call.",
            settings.parameters,
            end_call,
            settings.timeout_s,
            side_effect=True,
        )
    if settings.name == "transfer_call":
        return _transfer_call(settings, controls)
    raise ProviderError(
        f"unknown built-in tool '{settings.name}' (built-ins: end_call, transfer_call; or use kind: static)"
    )


def _transfer_call(settings: ToolSettings, controls: CallControls) -> Tool:
    """Send the caller on to one of the agent's configured destinations. The model only ever names one
    (an enum in the schema): a number it made up, or one a caller talked it into, cannot be dialed."""
    destinations = dict(settings.destinations)
    names = sorted(destinations)

    async def transfer_call(arguments: dict[str, Any]) -> dict[str, Any]:
        name = arguments["destination"]
        try:
            await controls.transfer(destinations[name])
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
    )
