"""Acceptance: a call whose remote language model dies mid-call is answered by its fallback, fast.

The agent's primary LLM is the ``openai`` provider pointed (by the operator's PARLEY_OPENAI_BASE_URL) at
a loopback OpenAI-compatible server; its fallback is the scripted model. The stack is built from the
agent's settings as a server builds it, and the call is a simulated phone line: spoken turns in, the
agent's audio out, on the real clock.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from parley.config import get_settings
from parley.engine.events import Event, EventType
from parley.engine.session import SessionOptions
from parley.server.metrics import ServerMetrics
from parley.simulate import Conversation, SimulationResult, UserTurn
from parley.stack import build_stack, prepare_stack
from tests.engine.harness import agent, speech
from tests.helpers.llm_assets import gemma_gguf, llama_server_process
from tests.helpers.llm_openai_stub import StubResponse, StubServer, text_stream

FALLBACK_REPLY = "Our main line is busy, but yes: we open at nine on Sunday."
LIMIT_S = 1.0
"""From the failure to the caller hearing the fallback's answer."""


@pytest.fixture
def operator(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def failover_agent(server: StubServer, operator: pytest.MonkeyPatch, **llm_options: Any) -> Any:
    model = f"stub-{server.url.split(':')[-1].split('/')[0]}"  # one per server: engines are shared by key
    operator.setenv("PARLEY_OPENAI_BASE_URL", server.url)
    operator.setenv("PARLEY_OPENAI_MODELS", json.dumps([model]))
    get_settings.cache_clear()
    options: dict[str, Any] = {"model": model, **llm_options}
    return agent(
        vad={"provider": "energy"},
        # Engines are shared by options, and a scripted recogniser's lines are used up: one per test.
        asr={"provider": "scripted", "options": {"lines": [f"When do you open, {model}?", "And on Sunday?"]}},
        llm={
            "provider": "openai",
            "options": options,
            "fallbacks": [{"provider": "scripted", "options": {"default_reply": FALLBACK_REPLY}}],
        },
        tts={"provider": "tone", "options": {"ms_per_char": 20}},
        first_message=None,
        endpointing={"min_silence_ms": 200, "unsure_silence_ms": 300, "max_silence_ms": 400},
    )


async def two_turns(config: Any, on_event: Any = None) -> tuple[Conversation, SimulationResult]:
    conversation = Conversation(config, build_stack(config), SessionOptions(interim_interval_s=None))
    if on_event is not None:
        conversation.timeline.subscribe(on_event)
    result = await conversation.run([UserTurn(speech(0.8)), UserTurn(speech(0.8))], answer_timeout_s=10)
    return conversation, result


def heard_after(result: SimulationResult, failover: Event) -> float:
    """Seconds from the failure to the first agent audio after it (checked, too, to be under the limit
    from the failed request's start: retries and the deadline count)."""
    started = [
        e.data["at"] for e in result.events if e.type is EventType.AGENT_AUDIO_STARTED and e.t >= failover.t
    ]
    assert started, "the caller heard nothing after the failure"
    asked = [e.t for e in result.events if e.type is EventType.LLM_REQUEST and e.t <= failover.t]
    assert started[0] - asked[-1] < LIMIT_S
    return float(started[0] - failover.t)


async def test_failover_call_primary_killed_mid_call_fallback_heard_within_a_second(
    operator: pytest.MonkeyPatch,
) -> None:
    async with StubServer([StubResponse(chunks=text_stream(["We open ", "at nine."]))]) as server:
        config = failover_agent(server, operator)

        def kill_after_first_answer(event: Event) -> None:
            if event.type is EventType.AGENT_REPLY_DONE:
                server.kill()  # the remote model's host goes away between the caller's turns

        _, result = await two_turns(config, kill_after_first_answer)
    first, second = result.turns
    assert first.agent_text == "We open at nine."
    assert second.agent_text == FALLBACK_REPLY, "the caller hears the fallback, not the error message"
    failovers = [e for e in result.events if e.type is EventType.PROVIDER_FAILOVER]
    assert failovers and (failovers[0].data["from"], failovers[0].data["to"]) == ("openai", "scripted")
    assert "cannot reach" in failovers[0].data["reason"]
    assert heard_after(result, failovers[0]) < LIMIT_S
    errors = [e for e in result.events if e.type is EventType.ERROR]
    assert not errors, errors
    metrics = ServerMetrics()
    for event in result.events:
        metrics.observe(event)
    assert (
        'parley_provider_failovers_total{from="openai",role="llm",to="scripted"}' in metrics.render().decode()
    )


async def test_failover_call_a_primary_that_goes_silent_is_left_at_the_first_token_deadline(
    operator: pytest.MonkeyPatch,
) -> None:
    answers = StubResponse(chunks=text_stream(["We open ", "at nine."]))
    silent = StubResponse(chunks=text_stream(["Far ", "too ", "late."]), delay=10.0)
    async with StubServer([answers, silent]) as server:
        config = failover_agent(server, operator, first_token_timeout_ms=300)
        _, result = await two_turns(config)
    assert [t.agent_text for t in result.turns] == ["We open at nine.", FALLBACK_REPLY]
    [failover] = [e for e in result.events if e.type is EventType.PROVIDER_FAILOVER]
    assert "no first token" in failover.data["reason"] and failover.data["after_ms"] >= 300
    assert heard_after(result, failover) < LIMIT_S
    asked = [e for e in result.events if e.type is EventType.LLM_REQUEST and e.t <= failover.t][-1]
    assert failover.t - asked.t < 0.3 + LIMIT_S / 2, "the deadline, not the 30 s read timeout"


@pytest.mark.models
async def test_failover_call_real_llama_cpp_server_killed_embedded_model_answers(
    operator: pytest.MonkeyPatch,
) -> None:
    """The real thing on both sides: a llama.cpp server process killed after the first answer, and
    Parley's embedded model (warmed with the rest of the stack) answering the next turn. The failover
    itself must cost under a second; the embedded model then takes its own time on a loaded 2-core box
    (seconds: it reads the whole conversation), which the fast test above does not depend on."""
    with llama_server_process(gemma_gguf()) as (base, process):
        operator.setenv("PARLEY_OPENAI_BASE_URL", base)
        operator.setenv("PARLEY_OPENAI_MODELS", json.dumps(["gemma"]))
        get_settings.cache_clear()
        config = agent(
            vad={"provider": "energy"},
            asr={
                "provider": "scripted",
                "options": {"lines": ["What is the capital of France?", "And of Italy?"]},
            },
            llm={
                "provider": "openai",
                "options": {"model": "gemma"},
                "fallbacks": [{"provider": "llamacpp"}],
            },
            tts={"provider": "tone", "options": {"ms_per_char": 20}},
            first_message=None,
            grounded=False,
            endpointing={"min_silence_ms": 200, "unsure_silence_ms": 300, "max_silence_ms": 400},
        )
        stack = await prepare_stack(config)  # warms the fallback too: it must answer as fast as the primary
        conversation = Conversation(config, stack, SessionOptions(interim_interval_s=None))

        def kill_after_first_answer(event: Event) -> None:
            if event.type is EventType.AGENT_REPLY_DONE and process.poll() is None:
                process.kill()

        conversation.timeline.subscribe(kill_after_first_answer)
        result = await conversation.run([UserTurn(speech(0.8)), UserTurn(speech(0.8))], answer_timeout_s=60)
    error_message = config.error_message
    first, second = result.turns
    assert first.agent_text and first.agent_text != error_message
    assert second.agent_text and second.agent_text != error_message
    failovers = [e for e in result.events if e.type is EventType.PROVIDER_FAILOVER]
    assert failovers and (failovers[0].data["from"], failovers[0].data["to"]) == ("openai", "llamacpp")
    assert failovers[0].data["after_ms"] < LIMIT_S * 1000
    asked = [e for e in result.events if e.type is EventType.LLM_REQUEST and e.t <= failovers[0].t][-1]
    assert any(
        e.type is EventType.LLM_FIRST_TOKEN and e.data["reply_id"] == asked.data["reply_id"]
        for e in result.events
    ), "the embedded model answered the request the dead server could not"
