from collections.abc import Iterator

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from structlog.testing import capture_logs

from parley.engine.agent import AgentConfig
from parley.providers import registry
from parley.providers.llm.scripted import ScriptedModel
from parley.providers.options import PROVIDER_OPTIONS
from parley.providers.registry import BuildRequest, provider_names
from parley.stack import ProviderEntry, ProviderError, build_stack, build_tools, register_provider

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


# --- the provider registry: names an agent picks, engines the operator installs ------------------------


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prefix: str = Field("You said:", max_length=20)


def echo_model(request: BuildRequest) -> ScriptedModel:
    options: EchoOptions = request.options
    return ScriptedModel([], default_reply=options.prefix, name="echo")


@pytest.fixture
def registry_snapshot() -> Iterator[None]:
    """Providers a test registers are forgotten after it."""
    entries = dict(registry._entries)
    options = {role: dict(table) for role, table in PROVIDER_OPTIONS.items()}
    loaded = registry._plugins_loaded
    yield
    registry._entries.clear()
    registry._entries.update(entries)
    for role, table in options.items():
        PROVIDER_OPTIONS[role].clear()
        PROVIDER_OPTIONS[role].update(table)
    registry._plugins_loaded = loaded


def test_the_built_ins_are_registered_by_name() -> None:
    assert provider_names("llm") == ["llamacpp", "openai", "scripted"]
    assert {"elevenlabs", "espeak", "openai", "piper", "tone"} <= set(provider_names("tts"))
    assert {"openai", "scripted", "whisper"} <= set(provider_names("asr"))
    assert provider_names("vad") == ["energy", "silero", "webrtc"]


def test_a_provider_the_operator_registers_is_offered_to_agents_with_its_options(
    registry_snapshot: None,
) -> None:
    register_provider(ProviderEntry("llm", "echo", echo_model, EchoOptions))
    agent = AgentConfig.model_validate({**FAST, "llm": {"provider": "echo", "options": {"prefix": "Echo:"}}})
    llm = build_stack(agent).llm
    assert isinstance(llm, ScriptedModel) and llm.name == "echo" and llm.default_reply == "Echo:"
    with pytest.raises(ValidationError, match="echo has no agent option 'program'"):
        AgentConfig.model_validate({**FAST, "llm": {"provider": "echo", "options": {"program": "/bin/sh"}}})


class FakeEntryPoint:
    def __init__(self, name: str, loaded: object) -> None:
        self.name, self.value, self._loaded = name, f"plugin:{name}", loaded

    def load(self) -> object:
        if isinstance(self._loaded, Exception):
            raise self._loaded
        return self._loaded


def test_installed_plugins_are_found_by_entry_point_and_a_broken_one_is_left_out(
    registry_snapshot: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = [
        FakeEntryPoint("echo", ProviderEntry("llm", "echo", echo_model, EchoOptions)),
        FakeEntryPoint("broken", ImportError("no module named nonsense")),
        FakeEntryPoint("wrong", object()),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group: points if group == "parley.providers" else [])
    registry._plugins_loaded = False
    with capture_logs() as logs:
        agent = AgentConfig.model_validate({**FAST, "llm": {"provider": "echo"}})
    assert build_stack(agent).llm.name == "echo"
    failed = sorted(entry["entry_point"] for entry in logs if entry["event"] == "provider_plugin_failed")
    assert failed == ["broken", "wrong"]
    with pytest.raises(ProviderError, match="unknown tts provider 'echo'"):
        registry.provider("tts", "echo")
