"""The providers Parley ships, registered by name in ``parley.providers.registry`` when this module is
imported (``parley.stack`` imports it): each turns an agent's validated options, the operator's settings
and the organization's named secrets into an engine. Also the operator's policy on which cloud models an
agent may name (``check_operator_policy``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from parley.audio.vad import VoiceActivityDetector
from parley.config import Settings, get_settings
from parley.engine.agent import AgentConfig, FallbackSettings, ProviderSettings
from parley.providers.asr.base import SpeechRecognizer
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
    register_provider,
)
from parley.providers.s2s.base import SpeechToSpeechEngine
from parley.providers.tts.base import SpeechSynthesizer

if TYPE_CHECKING:
    from openai import AsyncOpenAI

Secrets = Mapping[str, str]
"""An organization's secrets by name, already decrypted: what ``api_key_secret`` options refer to."""


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


def _openai_audio(request: BuildRequest, role: str, offered: list[str]) -> AsyncOpenAI:
    """The OpenAI audio client for a ``role`` whose model the operator offers (``offered``), with the
    key the agent names or the operator's."""
    from parley.providers.openai_audio import audio_client

    options: OpenAITtsOptions | OpenAITranscribeOptions = request.options
    host = request.host
    _offered(role, options.model, offered)
    key = _api_key(options.api_key_secret, host.openai_api_key, request.secrets, role)
    return audio_client(host.openai_base_url, key, host.openai_timeout_s)


def _openai_tts(request: BuildRequest) -> SpeechSynthesizer:
    from parley.providers.tts.openai_tts import OpenAISynthesizer

    options: OpenAITtsOptions = request.options
    return OpenAISynthesizer(
        _openai_audio(request, "tts", request.host.openai_tts_models),
        options.model,
        options.voice,
        speed=options.speed,
        instructions=options.instructions,
    )


def _openai_asr(request: BuildRequest) -> SpeechRecognizer:
    from parley.providers.asr.openai_transcribe import OpenAITranscriber

    options: OpenAITranscribeOptions = request.options
    return OpenAITranscriber(
        _openai_audio(request, "asr", request.host.openai_transcription_models),
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
