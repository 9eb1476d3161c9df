"""Build an EngineStack from an agent's provider settings: the embedded offline models by default.

Models are loaded once per process and shared by every session (keyed by provider and options); only
the VAD, which carries per-stream state, is made per session.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from parley.audio.vad import VoiceActivityDetector
from parley.builtin_tools import BUILTIN_TOOLS
from parley.config import Settings, get_settings
from parley.engine.agent import AgentConfig, FallbackSettings, ProviderSettings, ToolSettings
from parley.engine.chunker import fixed_clauses
from parley.engine.language import AUTO, language_note, recognizer_settings, voice_name, voice_settings
from parley.engine.options import Voice
from parley.engine.session import EngineStack
from parley.engine.tools import (
    CallContext,
    HasCodeTools,
    Tool,
    ToolRegistry,
    static_tool,
)
from parley.engine.transport import CallControls
from parley.engine.turns import EndOfTurnModel
from parley.providers.asr.base import SpeechRecognizer
from parley.providers.embeddings.base import SentenceEmbedder
from parley.providers.failover import (
    CircuitBreaker,
    FailoverLanguageModel,
    FailoverRecognizer,
    FailoverSynthesizer,
    Link,
)
from parley.providers.languages import PACKAGED_PIPER_LANGUAGE
from parley.providers.llm.base import LanguageModel
from parley.providers.options import (
    DeepgramAsrOptions,
    DeepgramTtsOptions,
    ElevenLabsConvaiOptions,
    ElevenLabsTtsOptions,
    EnergyVadOptions,
    EspeakOptions,
    LlamaCppOptions,
    OpenAIOptions,
    OpenAIRealtimeOptions,
    OpenAITranscribeOptions,
    OpenAITtsOptions,
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
from parley.providers.s2s.base import SpeechToSpeechEngine
from parley.providers.tts.base import SpeechSynthesizer
from parley.providers.tts.phrase_cache import PhraseCache, PhraseStore, WarmsPhrases

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
    # The operator's model directory stands in for the default model; an agent that names one gets it.
    if options.model == "base" and (model_dir is None or "model" in options.model_fields_set):
        from parley.providers.assets import whisper_base_dir

        model_dir = whisper_base_dir()
    return WhisperRecognizer(
        model_dir,
        cpu_threads=host.model_threads,
        compute_type=host.whisper_compute_type,
        beam_size=options.beam_size,
        language=options.language,
        languages=options.languages,
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
    chain: list[ProviderSettings | FallbackSettings] = [agent.llm, *agent.llm.fallbacks]
    for index, llm in enumerate(chain):
        model = llm.options.get("model")
        if llm.provider == "openai" and model not in host.openai_models:
            where = "llm" if index == 0 else f"llm.fallbacks.{index - 1}"
            raise ProviderError(
                f"{where}.options.model: {model!r} is not offered on this server "
                f"(PARLEY_OPENAI_MODELS: {', '.join(host.openai_models)})"
            )
    if agent.tts.provider == "openai":
        _offered("tts", parse_options("tts", "openai", agent.tts.options).model, host.openai_tts_models)
    if agent.asr.provider == "openai":
        _offered(
            "asr", parse_options("asr", "openai", agent.asr.options).model, host.openai_transcription_models
        )


def _offered(role: str, model: str, offered: list[str]) -> None:
    if model not in offered:
        setting = {"tts": "PARLEY_OPENAI_TTS_MODELS", "asr": "PARLEY_OPENAI_TRANSCRIPTION_MODELS"}[role]
        raise ProviderError(
            f"{role}.options.model: {model!r} is not offered on this server ({setting}: {', '.join(offered)})"
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
    first_token_ms = min(
        options.first_token_timeout_ms or host.openai_first_token_ms, host.openai_first_token_ms
    )
    return OpenAICompatibleModel(
        host.openai_base_url,
        options.model,
        _openai_key(options, host, request.secrets),
        timeout=host.openai_timeout_s,
        connect_timeout=host.openai_connect_timeout_s,
        max_attempts=host.openai_max_attempts,
        first_token_timeout=first_token_ms / 1000,
        stall_timeout=host.openai_stall_ms / 1000,
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
    if options.language is not None and options.language != PACKAGED_PIPER_LANGUAGE:
        voice = host.piper_voices.get(options.language)
        if voice is None:
            raise ProviderError(
                f"tts.options.language: this server has no Piper voice for {options.language!r} "
                f"(PARLEY_PIPER_VOICES has {', '.join(sorted(host.piper_voices)) or 'none'})"
            )
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


# --- ElevenLabs voice, OpenAI voice and transcription ---------------------------------------------------


def _api_key(secret_name: str | None, default: SecretStr | None, secrets: Secrets, role: str) -> str | None:
    """The organization's secret the options name, else the operator's default key (or none)."""
    if secret_name is not None:
        if secret_name not in secrets:
            raise ProviderError(
                f"{role}.options.api_key_secret: the organization has no secret named {secret_name!r}"
            )
        return secrets[secret_name]
    return default.get_secret_value() if default is not None else None


def _named_secret(options: Any) -> list[str]:
    name = getattr(options, "api_key_secret", None)
    return [name] if name is not None else []


def _elevenlabs_tts(request: BuildRequest) -> SpeechSynthesizer:
    from parley.providers.tts.elevenlabs import ElevenLabsSynthesizer

    options: ElevenLabsTtsOptions = request.options
    host = request.host
    key = _api_key(options.api_key_secret, host.elevenlabs_api_key, request.secrets, "tts")
    if not key:
        raise ProviderError(
            "tts: elevenlabs needs an API key: api_key_secret naming an organization secret, or the "
            "operator's PARLEY_ELEVENLABS_API_KEY"
        )
    voice_settings = {
        name: value
        for name in ("stability", "similarity_boost", "speed")
        if (value := getattr(options, name)) is not None
    }
    return ElevenLabsSynthesizer(
        key,
        options.voice_id,
        model=options.model,
        sample_rate=options.sample_rate,
        base_url=host.elevenlabs_base_url,
        voice_settings=voice_settings,
        language_code=options.language_code,
        timeout_s=host.elevenlabs_timeout_s,
    )


def _openai_tts(request: BuildRequest) -> SpeechSynthesizer:
    from parley.providers.openai_audio import audio_client
    from parley.providers.tts.openai_tts import OpenAISynthesizer

    options: OpenAITtsOptions = request.options
    host = request.host
    _offered("tts", options.model, host.openai_tts_models)
    key = _api_key(options.api_key_secret, host.openai_api_key, request.secrets, "tts")
    return OpenAISynthesizer(
        audio_client(host.openai_base_url, key, host.openai_timeout_s),
        options.model,
        options.voice,
        speed=options.speed,
        instructions=options.instructions,
    )


def _openai_asr(request: BuildRequest) -> SpeechRecognizer:
    from parley.providers.asr.openai_transcribe import OpenAITranscriber
    from parley.providers.openai_audio import audio_client

    options: OpenAITranscribeOptions = request.options
    host = request.host
    _offered("asr", options.model, host.openai_transcription_models)
    key = _api_key(options.api_key_secret, host.openai_api_key, request.secrets, "asr")
    return OpenAITranscriber(
        audio_client(host.openai_base_url, key, host.openai_timeout_s),
        options.model,
        language=options.language,
        prompt=options.prompt,
        interim=options.interim,
    )


# --- Deepgram: live transcription and the Aura voice ----------------------------------------------------


def _deepgram_key(secret_name: str | None, request: BuildRequest, role: str) -> str:
    key = _api_key(secret_name, request.host.deepgram_api_key, request.secrets, role)
    if not key:
        raise ProviderError(
            f"{role}: deepgram needs an API key: api_key_secret naming an organization secret, or the "
            "operator's PARLEY_DEEPGRAM_API_KEY"
        )
    return key


def _deepgram_asr(request: BuildRequest) -> SpeechRecognizer:
    from parley.providers.asr.deepgram import DeepgramRecognizer, ListenSettings

    options: DeepgramAsrOptions = request.options
    host = request.host
    return DeepgramRecognizer(
        _deepgram_key(options.api_key_secret, request, "asr"),
        ListenSettings(
            model=options.model,
            language=options.language,
            encoding=options.encoding,
            sample_rate=options.sample_rate,
            interim_results=options.interim_results,
            endpointing_ms=options.endpointing_ms,
            utterance_end_ms=options.utterance_end_ms,
            vad_events=options.vad_events,
            punctuate=options.punctuate,
            smart_format=options.smart_format,
        ),
        base_url=host.deepgram_base_url,
        connect_timeout=host.deepgram_connect_timeout_s,
        finalize_timeout=host.deepgram_finalize_timeout_s,
    )


def _deepgram_tts(request: BuildRequest) -> SpeechSynthesizer:
    from parley.providers.tts.deepgram import DeepgramSynthesizer

    options: DeepgramTtsOptions = request.options
    host = request.host
    return DeepgramSynthesizer(
        _deepgram_key(options.api_key_secret, request, "tts"),
        model=options.model,
        encoding=options.encoding,
        sample_rate=options.sample_rate,
        transport=options.transport,
        base_url=host.deepgram_base_url,
        connect_timeout=host.deepgram_connect_timeout_s,
        timeout=host.deepgram_timeout_s,
    )


for _entry in (
    ProviderEntry("asr", "deepgram", _deepgram_asr, DeepgramAsrOptions, _named_secret),
    ProviderEntry("tts", "deepgram", _deepgram_tts, DeepgramTtsOptions, _named_secret),
):
    register_provider(_entry)


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
    ProviderEntry("tts", "elevenlabs", _elevenlabs_tts, ElevenLabsTtsOptions, _named_secret),
    ProviderEntry("tts", "openai", _openai_tts, OpenAITtsOptions, _named_secret),
    ProviderEntry("asr", "openai", _openai_asr, OpenAITranscribeOptions, _named_secret),
):
    register_provider(_entry)


# --- speech to speech (``mode: speech_to_speech``) ----------------------------------------------------


def _openai_realtime(request: BuildRequest) -> SpeechToSpeechEngine:
    from parley.providers.s2s.openai_realtime import OpenAIRealtimeEngine

    options: OpenAIRealtimeOptions = request.options
    host = request.host
    if options.api_key_secret is not None:
        if options.api_key_secret not in request.secrets:
            raise ProviderError(
                f"s2s.options.api_key_secret: the organization has no secret named {options.api_key_secret!r}"
            )
        key: str | None = request.secrets[options.api_key_secret]
    else:
        key = host.openai_api_key.get_secret_value() if host.openai_api_key is not None else None
    return OpenAIRealtimeEngine(
        base_url=host.openai_realtime_url,
        api_key=key,
        model=options.model,
        voice=options.voice,
        turn_detection=options.turn_detection,
        vad_threshold=options.vad_threshold,
        silence_duration_ms=options.silence_duration_ms,
        prefix_padding_ms=options.prefix_padding_ms,
        transcription_model=options.transcription_model,
        max_output_tokens=options.max_output_tokens,
        timeout_s=host.openai_realtime_timeout_s,
    )


def _realtime_secrets(options: OpenAIRealtimeOptions) -> list[str]:
    return [options.api_key_secret] if options.api_key_secret is not None else []


register_provider(
    ProviderEntry("s2s", "openai_realtime", _openai_realtime, OpenAIRealtimeOptions, _realtime_secrets)
)


def _elevenlabs_convai(request: BuildRequest) -> SpeechToSpeechEngine:
    """An ElevenLabs agent; with no key at all (neither a named secret nor the operator's) it must be a
    public agent."""
    from parley.providers.s2s.elevenlabs_convai import ElevenLabsConvaiEngine

    options: ElevenLabsConvaiOptions = request.options
    host = request.host
    key = _api_key(options.api_key_secret, host.elevenlabs_api_key, request.secrets, "s2s")
    wanted = {
        "prompt": options.override_prompt,
        "first_message": options.override_first_message,
        "language": options.override_language,
    }
    return ElevenLabsConvaiEngine(
        options.agent_id,
        api_key=key,
        base_url=host.elevenlabs_base_url,
        overrides=frozenset(name for name, on in wanted.items() if on),
        voice_id=options.voice_id,
        dynamic_variables=dict(options.dynamic_variables),
        timeout_s=host.elevenlabs_convai_timeout_s,
        end_of_reply_s=host.elevenlabs_convai_end_of_reply_ms / 1000,
    )


register_provider(
    ProviderEntry("s2s", "elevenlabs_convai", _elevenlabs_convai, ElevenLabsConvaiOptions, _named_secret)
)


def _speech_to_speech_stack(agent: AgentConfig, host: Settings, secrets: Secrets) -> EngineStack:
    """One remote engine hears and speaks; the recogniser and VAD stay for supervisors' legs, the agent's
    language model is loaded only when post-call analysis or coaching asks for one, and the pipeline's
    voice is a stand-in that is never asked."""
    from parley.engine.speech_to_speech import NotInPipeline

    assert agent.s2s is not None  # the agent's validator makes sure
    unused = NotInPipeline()
    wants_llm = agent.analysis.enabled or (agent.coaching.enabled and agent.coaching.use_llm)
    return EngineStack(
        vad_factory=_engine("vad", agent.vad, host, secrets),
        recognizer=_engine("asr", agent.asr, host, secrets),
        llm=_engine("llm", agent.llm, host, secrets) if wants_llm else unused,
        tts=unused,
        s2s=_engine("s2s", agent.s2s, host, secrets),
    )


def _key(kind: str, settings: ProviderSettings | FallbackSettings, *extra: str) -> str:
    options = json.dumps(settings.options, sort_keys=True, default=str)
    return ":".join([kind, settings.provider, options, *extra])


def _engine(role: Role, settings: ProviderSettings, host: Settings, secrets: Secrets) -> Any:
    """The engine for one role, shared by every session asking for the same thing: the provider alone,
    or, with ``fallbacks``, a failover chain over it and them (``providers/failover.py``)."""
    chosen: list[ProviderSettings | FallbackSettings] = [settings, *settings.fallbacks]
    links = [_link(role, each, host, secrets) for each in chosen]
    if len(links) == 1:
        return links[0][1].engine
    chain = _CHAINS[role]
    return _shared("chain:" + "|".join(key for key, _ in links), lambda: chain([link for _, link in links]))


def _link(
    role: Role, chosen: ProviderSettings | FallbackSettings, host: Settings, secrets: Secrets
) -> tuple[str, Link[Any]]:
    """One provider's shared engine and circuit breaker, with its cache key. One built with an
    organization's secrets is never shared with another: their digest is part of the key."""
    entry = provider(role, chosen.provider)
    options = parse_options(role, chosen.provider, chosen.options)
    wanted = {name: secrets.get(name) for name in entry.secret_names(options)}
    digest = hashlib.sha256(json.dumps(wanted, sort_keys=True).encode()).hexdigest() if wanted else ""
    request = BuildRequest(options, host, {k: v for k, v in wanted.items() if v is not None})
    key = _key(role, chosen, digest)
    engine = _shared(key, lambda: _with_phrase_cache(role, entry.factory(request), key, host))
    breaker = _shared(
        "breaker:" + key,
        lambda: CircuitBreaker(host.provider_breaker_failures, host.provider_breaker_cooldown_s),
    )
    return key, Link(chosen.provider, engine, breaker)


def _with_phrase_cache(role: Role, engine: Any, key: str, host: Settings) -> Any:
    """Every voice, whichever provider made it, remembers its phrases under its own key (provider,
    options, credentials) in the one store bounded for the whole process (PARLEY_TTS_PHRASE_CACHE_MB)."""
    if role != "tts":
        return engine
    store = _shared("phrase-store", lambda: PhraseStore(host.tts_phrase_cache_mb * 1024 * 1024))
    return PhraseCache(engine, voice=key, store=store)


_CHAINS: dict[str, Callable[[list[Link[Any]]], Any]] = {
    "asr": FailoverRecognizer,
    "llm": FailoverLanguageModel,
    "tts": FailoverSynthesizer,
}


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
    if agent.mode == "speech_to_speech":
        return _speech_to_speech_stack(agent, host, found)
    language = getattr(agent, "language", "en")
    voice = agent.tts if language == AUTO else voice_settings(agent, language, host.piper_voices)
    return EngineStack(
        vad_factory=_engine("vad", agent.vad, host, found),
        recognizer=_engine("asr", recognizer_settings(agent), host, found),
        llm=_engine("llm", agent.llm, host, found),
        tts=_engine("tts", voice, host, found),
        turn_model=_shared(
            f"turn:{agent.endpointing.semantic}:{agent.vad.provider}", lambda: _turn_model(agent)
        ),
        embedder=_shared("embedder", _embedder) if _wants_embedder(agent) else None,
        voice=voice_name(voice),
        voices=_voices(agent, host, found) if language == AUTO else None,
    )


def _voices(agent: AgentConfig, host: Settings, secrets: Secrets) -> Callable[[str], Voice]:
    """The voice of each language a caller of an ``auto`` agent turns out to speak (built on first use,
    then shared like every engine)."""

    def voice(language: str) -> Voice:
        settings = voice_settings(agent, language, host.piper_voices)
        return Voice(voice_name(settings), _engine("tts", settings, host, secrets))

    return voice


WarmModel = Callable[[object, Callable[[], Awaitable[Any]]], Awaitable[None]]
"""Runs a shared model's warm-up (``model``, ``warm``); a server warms each model once for all agents."""


async def _warm_now(_model: object, warm: Callable[[], Awaitable[Any]]) -> None:
    await warm()


async def prepare_stack(
    agent: AgentConfig, secrets: Secrets | None = None, *, warm_model: WarmModel = _warm_now
) -> EngineStack:
    """Load and warm every model so the first turn is as fast as the rest; the agent's own prompt is
    primed every time, the shared models through ``warm_model``."""
    stack = await asyncio.to_thread(build_stack, agent, secrets)
    if stack.s2s is not None:  # the remote engine needs no warming; the recogniser serves supervisors
        return stack
    await warm_model(stack.recognizer, stack.recognizer.warm_up)
    await warm_model(stack.tts, stack.tts.warm_up)
    await warm_model(stack.llm, stack.llm.warm_up)
    await prime_agent(stack, agent)

    async def probe_vad() -> None:
        import numpy as np

        vad = stack.vad_factory()
        vad.probability(np.zeros(vad.frame_samples, np.int16))

    await warm_model(stack.vad_factory, probe_vad)
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
        examples=grounding_examples(tools.closing_tool(), tools.actions()),
        language_note=language_note(getattr(agent, "language", None)),
    )
    await stack.llm.warm_up([context.system_message(), *context.examples], tools.specs() or None)
    await warm_greeting(stack, agent)


async def warm_greeting(stack: EngineStack, agent: AgentConfig) -> None:
    """Synthesize the agent's first message ahead, clause by clause as a reply will ask for it, so a
    caller hears it the moment the call connects."""
    if agent.first_message and isinstance(stack.tts, WarmsPhrases):
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
