"""An agent in speech-to-speech mode: what it may set, and the stack Parley builds for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.engine.speech_to_speech import NotInPipeline
from parley.providers.registry import ProviderError
from parley.providers.s2s.openai_realtime import OpenAIRealtimeEngine
from parley.stack import build_stack


def realtime_agent(**options: object) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "mode": "speech_to_speech",
            "s2s": {"provider": "openai_realtime", "options": options},
            "asr": {"provider": "scripted"},
            "vad": {"provider": "energy"},
        }
    )


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PARLEY_OPENAI_REALTIME_URL", "ws://127.0.0.1:9/v1")
    monkeypatch.delenv("PARLEY_OPENAI_API_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_realtime_options_are_an_allow_list_with_bounds() -> None:
    agent = realtime_agent(voice="cedar", silence_duration_ms=300, api_key_secret="openai_key")
    assert agent.s2s is not None and agent.s2s.options["voice"] == "cedar"
    for bad in (
        {"voice": "robot"},
        {"silence_duration_ms": 10},
        {"url": "wss://evil.example"},
        {"model": "x"},
    ):
        with pytest.raises(ValidationError):
            realtime_agent(**bad)
    with pytest.raises(ValidationError, match="needs s2s"):
        AgentConfig.model_validate({"mode": "speech_to_speech"})


def test_realtime_stack_uses_the_operators_url_and_the_orgs_secret(operator: None) -> None:
    agent = realtime_agent(model="gpt-realtime-mini", voice="coral", api_key_secret="openai_key")
    stack = build_stack(agent, {"openai_key": "sk-org"})
    engine = stack.s2s
    assert isinstance(engine, OpenAIRealtimeEngine)
    assert engine.base_url == "ws://127.0.0.1:9/v1" and engine.model == "gpt-realtime-mini"
    assert engine.voice == "coral" and engine.input_rate == engine.output_rate == 24000
    assert isinstance(stack.llm, NotInPipeline) and isinstance(stack.tts, NotInPipeline)
    with pytest.raises(ProviderError, match="no secret named 'openai_key'"):
        build_stack(agent, {})
