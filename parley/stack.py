"""Build an EngineStack from an agent's provider settings: the embedded offline models by default.

The providers, and how each is built, are in ``parley.builtin_providers`` (and the operator's plugins,
``parley.providers.registry``); this module puts them together. Models are loaded once per process and
shared by every session (keyed by provider and options); only the VAD, which carries per-stream state,
is made per session.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from parley.builtin_providers import Secrets, check_operator_policy  # importing it registers the built-ins
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
from parley.providers.embeddings.base import SentenceEmbedder
from parley.providers.failover import (
    CircuitBreaker,
    FailoverLanguageModel,
    FailoverRecognizer,
    FailoverSynthesizer,
    Link,
)
from parley.providers.options import Role, parse_options
from parley.providers.registry import (
    BuildRequest,
    ProviderEntry,
    ProviderError,
    provider,
    register_provider,
)
from parley.providers.tts.phrase_cache import PhraseCache, PhraseStore, WarmsPhrases

__all__ = [
    "ProviderEntry",
    "ProviderError",
    "build_stack",
    "build_tools",
    "check_operator_policy",
    "prepare_stack",
    "register_provider",
]

_cache: dict[str, Any] = {}


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
