from pathlib import Path

import pytest

from parley.engine.agent import AgentConfigError, default_agent, load_agent


def test_default_agent_loads_with_end_call_tool() -> None:
    agent = default_agent()
    assert agent.name == "assistant"
    assert [t.name for t in agent.tools] == ["end_call"]


def test_yaml_agent_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    path.write_text(
        "name: dentist\nfirst_message: Hello!\nknowledge: [Open 9-5]\nendpointing: {min_silence_ms: 300}\n"
    )
    agent = load_agent(path)
    assert agent.first_message == "Hello!"
    assert agent.endpointing.min_silence_ms == 300


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "mapping"),
        ("nmae: typo\n", "nmae"),
        ("endpointing: {min_silence_ms: -5}\n", "min_silence_ms"),
    ],
)
def test_bad_agent_files_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(AgentConfigError, match=message):
        load_agent(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AgentConfigError, match="not found"):
        load_agent(tmp_path / "nope.yaml")
