"""Threat: an API-key holder turns agent settings into host configuration.

Agent settings are tenant data. A program to run, a model file or directory, a base URL the server
fetches, thread counts and context sizes belong to the operator (``PARLEY_*``); an agent that names one is
refused with a 422 that names the field, and nothing is stored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.engine.agent import AgentConfigError, load_agent
from tests.api.conftest import client, platform  # noqa: F401  (fixtures)

PROBES = [
    ("tts", "espeak", {"program": "/tmp/evil.sh"}, "program"),
    ("llm", "llamacpp", {"model_path": "/etc/shadow"}, "model_path"),
    ("llm", "llamacpp", {"n_ctx": 10_000_000}, "n_ctx"),
    ("llm", "openai", {"model": "gpt-4o-mini", "base_url": "http://169.254.169.254/"}, "base_url"),
    ("asr", "whisper", {"model_dir": "/root"}, "model_dir"),
    ("asr", "whisper", {"cpu_threads": 512}, "cpu_threads"),
    ("tts", "piper", {"onnx_path": "/tmp/model.onnx"}, "onnx_path"),
    ("tts", "espeak", {"rate_wpm": 100_000}, "rate_wpm"),
    ("asr", "whisper", {"beam_size": 1000}, "beam_size"),
]


def config(role: str, provider: str, options: dict[str, Any]) -> dict[str, Any]:
    return {"name": "probe", role: {"provider": provider, "options": options}}


@pytest.mark.parametrize(("role", "provider", "options", "field"), PROBES)
async def test_host_settings_in_an_agent_are_refused_naming_the_field(
    client: httpx.AsyncClient,  # noqa: F811
    role: str,
    provider: str,
    options: dict[str, Any],
    field: str,
) -> None:
    made = await client.post("/v1/agents", json={"config": config(role, provider, options)})
    assert made.status_code == 422, made.text
    detail = str(made.json()["detail"])
    assert field in detail and role in detail
    assert (await client.get("/v1/agents")).json()["data"] == [], "nothing was stored"


async def test_an_update_cannot_smuggle_a_program_in(client: httpx.AsyncClient) -> None:  # noqa: F811
    made = await client.post("/v1/agents", json={"config": config("tts", "espeak", {"voice": "en-gb"})})
    assert made.status_code == 201, made.text
    changed = await client.patch(
        f"/v1/agents/{made.json()['id']}", json={"config": config("tts", "espeak", {"program": "sh"})}
    )
    assert changed.status_code == 422 and "program" in changed.text
    versions = (await client.get(f"/v1/agents/{made.json()['id']}/versions")).json()
    assert len(versions) == 1


async def test_models_outside_the_operators_list_are_refused(client: httpx.AsyncClient) -> None:  # noqa: F811
    refused = await client.post(
        "/v1/agents", json={"config": config("llm", "openai", {"model": "some-expensive-model"})}
    )
    assert refused.status_code == 422 and "PARLEY_OPENAI_MODELS" in refused.text
    allowed = await client.post(
        "/v1/agents", json={"config": config("llm", "openai", {"model": "gpt-4o-mini"})}
    )
    assert allowed.status_code == 201, allowed.text


def test_agent_files_obey_the_same_allow_list(tmp_path: Path) -> None:
    file = tmp_path / "agent.yaml"
    file.write_text("name: x\ntts: {provider: espeak, options: {program: /bin/sh}}\n")
    with pytest.raises(AgentConfigError, match="program"):
        load_agent(file)
