"""Build an EngineStack from an agent's provider settings: the embedded offline models by default.

Models are loaded once per process and shared by every session (keyed by provider and options); only
the VAD, which carries per-stream state, is made per session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from parley.audio.vad import VoiceActivityDetector
from parley.engine.agent import AgentConfig, ProviderSettings, ToolSettings
from parley.engine.session import EngineStack
from parley.engine.tools import Tool, ToolRegistry, static_tool
from parley.engine.turns import EndOfTurnModel
from parley.providers.asr.base import SpeechRecognizer
from parley.providers.llm.base import LanguageModel
from parley.providers.tts.base import SpeechSynthesizer


class ProviderError(ValueError):
    """An agent names a provider Parley does not have, or one that cannot start here."""


_cache: dict[str, Any] = {}


def _key(kind: str, settings: ProviderSettings) -> str:
    return f"{kind}:{settings.provider}:{json.dumps(settings.options, sort_keys=True, default=str)}"


def _vad_factory(settings: ProviderSettings) -> Callable[[], VoiceActivityDetector]:
    options = settings.options
    if settings.provider == "silero":
        from parley.audio.silero import SileroVAD

        return lambda: SileroVAD(**options)
    if settings.provider == "webrtc":
        from parley.audio.webrtc_vad import WebRTCVAD

        return lambda: WebRTCVAD(**options)
    if settings.provider == "energy":
        from parley.audio.vad import EnergyVAD

        return lambda: EnergyVAD(**options)
    raise ProviderError(f"unknown VAD provider '{settings.provider}' (choose silero, webrtc or energy)")


def _recognizer(settings: ProviderSettings) -> SpeechRecognizer:
    options = dict(settings.options)
    if settings.provider == "whisper":
        from parley.providers.asr.whisper import WhisperRecognizer

        size = options.pop("model", "tiny.en")
        if size == "base" and "model_dir" not in options:
            from parley.providers.assets import whisper_base_dir

            options["model_dir"] = whisper_base_dir()
        elif size != "tiny.en":
            raise ProviderError(f"unknown whisper model '{size}' (choose tiny.en or base)")
        return WhisperRecognizer(**options)
    if settings.provider == "scripted":
        from parley.providers.asr.scripted import ScriptedRecognizer

        return ScriptedRecognizer(**options)
    raise ProviderError(f"unknown ASR provider '{settings.provider}' (choose whisper or scripted)")


def _language_model(settings: ProviderSettings) -> LanguageModel:
    options = dict(settings.options)
    if settings.provider == "llamacpp":
        from parley.providers.assets import gemma_gguf
        from parley.providers.llm.llamacpp import LlamaCppModel

        path = options.pop("model_path", None) or gemma_gguf()
        return LlamaCppModel(path, **options)
    if settings.provider == "openai":
        from parley.providers.llm.openai_compat import OpenAICompatibleModel

        return OpenAICompatibleModel(**options)
    if settings.provider == "scripted":
        from parley.providers.llm.scripted import ScriptedModel, ScriptRule

        rules = [ScriptRule(**rule) for rule in options.pop("rules", [])]
        return ScriptedModel(rules, **options)
    raise ProviderError(f"unknown LLM provider '{settings.provider}' (choose llamacpp, openai or scripted)")


def _synthesizer(settings: ProviderSettings) -> SpeechSynthesizer:
    options = settings.options
    if settings.provider == "piper":
        from parley.providers.tts.piper import PiperSynthesizer

        return PiperSynthesizer(**options)
    if settings.provider == "espeak":
        from parley.providers.tts.espeak import EspeakSynthesizer

        return EspeakSynthesizer(**options)
    if settings.provider == "tone":
        from parley.providers.tts.tone import ToneSynthesizer

        return ToneSynthesizer(**options)
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


def build_stack(agent: AgentConfig) -> EngineStack:
    """Load (or reuse) the models the agent asks for. Blocking: call it off the event loop."""
    return EngineStack(
        vad_factory=_vad_factory(agent.vad),
        recognizer=_shared(_key("asr", agent.asr), lambda: _recognizer(agent.asr)),
        llm=_shared(_key("llm", agent.llm), lambda: _language_model(agent.llm)),
        tts=_shared(_key("tts", agent.tts), lambda: _synthesizer(agent.tts)),
        turn_model=_shared(
            f"turn:{agent.endpointing.semantic}:{agent.vad.provider}", lambda: _turn_model(agent)
        ),
    )


async def prepare_stack(agent: AgentConfig) -> EngineStack:
    """Load and warm every model so the first turn is as fast as the rest."""
    stack = await asyncio.to_thread(build_stack, agent)
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


def build_tools(agent: AgentConfig) -> ToolRegistry:
    registry = ToolRegistry()
    for settings in agent.tools:
        registry.register(_tool(settings))
    return registry


def _tool(settings: ToolSettings) -> Tool:
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
    raise ProviderError(f"unknown built-in tool '{settings.name}' (built-ins: end_call; or use kind: static)")
