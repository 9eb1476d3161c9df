from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from parley.engine.agent import AgentConfig, AgentConfigError, default_agent, load_agent


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


@pytest.mark.parametrize(
    ("tool", "where"),
    [
        (
            {"name": "transfer_call", "destinations": {"desk": "+19005550177"}},
            ("tools", 0, "destinations", "desk"),
        ),
        ({"name": "send_sms", "recipients": {"boss": "+19005550177"}}, ("tools", 0, "recipients", "boss")),
    ],
)
def test_an_agent_never_transfers_to_or_texts_a_premium_rate_number(
    tool: dict[str, Any], where: tuple[Any, ...]
) -> None:
    """Whoever can save an agent could otherwise have the operator's account call their 900 number."""
    with pytest.raises(ValidationError) as refused:
        AgentConfig.model_validate({"tools": [tool]})
    [error] = refused.value.errors()
    assert error["loc"] == where and error["type"] == "premium_rate"
    ordinary = {**tool, **{k: {n: "+14155550100" for n in v} for k, v in tool.items() if isinstance(v, dict)}}
    assert AgentConfig.model_validate({"tools": [ordinary]}).tools[0].name == tool["name"]
