"""An agent on ElevenLabs Conversational AI: what it may set, and the engine Parley builds for it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import ValidationError

from parley.config import get_settings
from parley.engine.agent import AgentConfig
from parley.providers.llm.base import ToolSpec
from parley.providers.registry import ProviderError
from parley.providers.s2s.base import S2SSetup
from parley.providers.s2s.elevenlabs_convai import ElevenLabsConvaiEngine
from parley.stack import build_stack


def convai_agent(**options: object) -> AgentConfig:
    return AgentConfig.model_validate(
        {
            "mode": "speech_to_speech",
            "s2s": {"provider": "elevenlabs_convai", "options": {"agent_id": "agent_7301k0", **options}},
            "asr": {"provider": "scripted"},
            "vad": {"provider": "energy"},
        }
    )


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PARLEY_ELEVENLABS_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("PARLEY_ELEVENLABS_CONVAI_END_OF_REPLY_MS", "700")
    monkeypatch.delenv("PARLEY_ELEVENLABS_API_KEY", raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_elevenlabs_convai_options_are_an_allow_list_with_bounds() -> None:
    variables = {"plan": "gold"}
    agent = convai_agent(override_prompt=False, voice_id="21m00Tcm4TlvDq8ikWAM", dynamic_variables=variables)
    assert agent.s2s is not None and agent.s2s.options["override_prompt"] is False
    for bad in (
        {"agent_id": "agent 1; rm"},
        {"voice_id": "../../etc"},
        {"url": "wss://evil.example"},
        {"base_url": "http://169.254.169.254"},
        {"dynamic_variables": {"bad key": "x"}},
        {"dynamic_variables": {"long": "x" * 501}},
        {"dynamic_variables": {f"v{i}": i for i in range(33)}},
        {"api_key_secret": "a/b"},
    ):
        with pytest.raises(ValidationError):
            convai_agent(**bad)
    with pytest.raises(ValidationError):
        AgentConfig.model_validate(
            {"mode": "speech_to_speech", "s2s": {"provider": "elevenlabs_convai", "options": {}}}
        )


def test_elevenlabs_convai_engine_uses_the_operators_host_and_the_orgs_secret(operator: None) -> None:
    agent = convai_agent(override_language=False, voice_id="21m00Tcm4TlvDq8ikWAM", api_key_secret="eleven")
    engine = build_stack(agent, {"eleven": "xi-org"}).s2s
    assert isinstance(engine, ElevenLabsConvaiEngine)
    assert engine.base_url == "http://127.0.0.1:9" and engine.agent_id == "agent_7301k0"
    assert engine.end_of_reply_s == 0.7 and engine.input_rate == engine.output_rate == 16000
    setup = S2SSetup("Be kind.", (ToolSpec("weather", "", {}),), first_message="Hi!", language="fr")
    assert engine.initiation(setup) == {
        "type": "conversation_initiation_client_data",
        "conversation_config_override": {
            "agent": {"prompt": {"prompt": "Be kind."}, "first_message": "Hi!"},
            "tts": {"voice_id": "21m00Tcm4TlvDq8ikWAM"},
        },
    }
    with pytest.raises(ProviderError, match="no secret named 'eleven'"):
        build_stack(agent, {})
    public = build_stack(convai_agent(override_prompt=False, override_first_message=False), {}).s2s
    assert isinstance(public, ElevenLabsConvaiEngine)
    assert public.initiation(setup)["conversation_config_override"] == {"agent": {"language": "fr"}}
