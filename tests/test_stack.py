import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfig
from parley.stack import ProviderError, build_stack, build_tools

FAST = {
    "vad": {"provider": "energy"},
    "asr": {"provider": "scripted", "options": {"lines": ["hello"]}},
    "llm": {"provider": "scripted", "options": {"rules": [{"pattern": "hello", "reply": "Hi!"}]}},
    "tts": {"provider": "tone"},
}


def test_fast_engines_build_from_agent_settings() -> None:
    agent = AgentConfig.model_validate(FAST)
    stack = build_stack(agent)
    assert stack.recognizer.name == "scripted"
    assert stack.tts.name == "tone"
    assert stack.turn_model is None
    assert stack.vad_factory() is not stack.vad_factory(), "each session gets its own VAD state"
    assert build_stack(agent).llm is stack.llm, "models are shared between sessions"


@pytest.mark.parametrize("role", ["vad", "asr", "llm", "tts"])
def test_unknown_provider_is_named_when_the_agent_is_read(role: str) -> None:
    with pytest.raises(ValidationError, match=f"unknown {role} provider 'nonsense'"):
        AgentConfig.model_validate({**FAST, role: {"provider": "nonsense"}})


def test_unknown_builtin_tool_is_refused() -> None:
    agent = AgentConfig.model_validate({"tools": [{"name": "launch_rockets"}]})
    with pytest.raises(ProviderError, match="launch_rockets"):
        build_tools(agent)
