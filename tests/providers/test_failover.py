"""Provider chains: failover before the first chunk only, circuit breakers, and what each reports."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from parley.audio.frame import PCM16
from parley.engine.agent import AgentConfig
from parley.providers.asr.base import RecognitionStream, Transcript
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.errors import ProviderRejected, ProviderUnavailable
from parley.providers.events import ProviderEvent, bind_reporter
from parley.providers.failover import (
    BreakerState,
    CircuitBreaker,
    FailoverLanguageModel,
    FailoverRecognizer,
    FailoverSynthesizer,
    Link,
)
from parley.providers.llm.base import ChatMessage, LanguageModel, LLMChunk, ToolSpec
from parley.providers.llm.scripted import ScriptedModel
from parley.providers.tts.base import SpeechSynthesizer
from parley.providers.tts.tone import ToneSynthesizer
from parley.stack import ProviderError, build_stack, check_operator_policy

ASK = [ChatMessage("user", "Are you open on Sunday?")]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class DeadModel:
    """A remote model that cannot be reached; counts how often it was asked."""

    name = "dead"

    def __init__(self, error: Exception | None = None, after: Sequence[str] = ()) -> None:
        self.error = error or ProviderUnavailable("connection refused", provider="openai")
        self.after = list(after)
        self.asked = 0

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
    ) -> AsyncIterator[LLMChunk]:
        self.asked += 1
        for word in self.after:  # words said before it dies (a failure mid-answer)
            yield LLMChunk(text=word)
        raise self.error

    def count_tokens(self, text: str) -> int:
        return len(text)

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        raise ProviderUnavailable("cannot reach it")


def chain(
    *models: LanguageModel, failures: int = 2, clock: Clock | None = None
) -> tuple[FailoverLanguageModel, list[ProviderEvent]]:
    events: list[ProviderEvent] = []
    names = ["openai", "llamacpp", "scripted", "spare"]
    links = [
        Link(names[i], m, CircuitBreaker(failures, 30.0, clock or Clock())) for i, m in enumerate(models)
    ]
    return bind_reporter(FailoverLanguageModel(links), events.append), events


async def answer(model: LanguageModel) -> str:
    return "".join([chunk.text async for chunk in model.stream(ASK)])


def fallback() -> ScriptedModel:
    return ScriptedModel([], default_reply="Yes, from ten to four.")


async def test_failover_an_unavailable_primary_is_answered_by_the_fallback_and_reported() -> None:
    dead, spare = DeadModel(), fallback()
    model, events = chain(dead, spare)
    assert await answer(model) == "Yes, from ten to four."
    assert dead.asked == 1 and len(spare.calls) == 1
    [hop] = [e for e in events if e.kind == "failover"]
    assert hop.data["role"] == "llm" and (hop.data["from"], hop.data["to"]) == ("openai", "llamacpp")
    assert "connection refused" in hop.data["reason"] and hop.data["after_ms"] >= 0


async def test_failover_never_repeats_an_answer_that_had_begun() -> None:
    dead, spare = DeadModel(after=["Yes, we ", "are "]), fallback()
    model, events = chain(dead, spare)
    said: list[str] = []
    with pytest.raises(ProviderUnavailable):
        async for chunk in model.stream(ASK):
            said.append(chunk.text)
    assert said == ["Yes, we ", "are "] and spare.calls == []
    assert not [e for e in events if e.kind == "failover"]


async def test_failover_a_bad_request_is_not_sent_elsewhere() -> None:
    dead, spare = DeadModel(ProviderRejected("context too long", status=400)), fallback()
    model, _ = chain(dead, spare)
    with pytest.raises(ProviderRejected):
        await answer(model)
    assert spare.calls == []
    assert model.links[0].breaker.state is BreakerState.CLOSED and model.links[0].breaker.failures == 0


async def test_failover_breaker_opens_then_skips_the_dead_provider_at_once() -> None:
    clock = Clock()
    dead, spare = DeadModel(), fallback()
    model, events = chain(dead, spare, failures=2, clock=clock)
    for _ in range(2):
        assert await answer(model) == "Yes, from ten to four."
    breaker = model.links[0].breaker
    assert breaker.state is BreakerState.OPEN
    assert [e.data["state"] for e in events if e.kind == "breaker"] == ["open"]
    await answer(model)
    assert dead.asked == 2, "an open breaker skips its provider without asking it"
    assert events[-1].kind == "failover" and events[-1].data["reason"] == "circuit open"


async def test_failover_half_open_probe_after_the_cooldown_closes_on_success() -> None:
    clock = Clock()
    flaky, spare = DeadModel(), fallback()
    model, events = chain(flaky, spare, failures=1, clock=clock)
    await answer(model)
    assert model.links[0].breaker.state is BreakerState.OPEN
    clock.now += 29
    await answer(model)
    assert flaky.asked == 1, "still cooling down"
    clock.now += 2
    healed = fallback()
    healed.default_reply = "Primary again."
    model.links[0].engine.stream = healed.stream  # type: ignore[method-assign]  # the server is back
    assert await answer(model) == "Primary again."
    states = [(e.data["previous"], e.data["state"]) for e in events if e.kind == "breaker"]
    assert states == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


async def test_failover_a_failed_probe_opens_the_breaker_again() -> None:
    clock = Clock()
    dead, spare = DeadModel(), fallback()
    model, events = chain(dead, spare, failures=1, clock=clock)
    await answer(model)
    clock.now += 31
    await answer(model)
    assert dead.asked == 2
    states = [e.data["state"] for e in events if e.kind == "breaker"]
    assert states == ["open", "half_open", "open"]


async def test_failover_only_one_probe_at_a_time_and_a_cancelled_probe_frees_its_slot() -> None:
    clock = Clock()
    breaker = CircuitBreaker(1, 10.0, clock)
    breaker.failed(breaker.acquire()[0])  # type: ignore[arg-type]
    clock.now += 11
    probe, change = breaker.acquire()
    assert probe is not None and probe.probe and change == (BreakerState.OPEN, BreakerState.HALF_OPEN)
    assert breaker.acquire()[0] is None, "a second request waits for the probe's verdict"
    breaker.abandon(probe)
    assert breaker.acquire()[0] is not None


async def test_failover_when_every_breaker_is_open_the_last_provider_is_still_asked() -> None:
    clock = Clock()
    first, second = DeadModel(), DeadModel()
    model, _ = chain(first, second, failures=1, clock=clock)
    with pytest.raises(ProviderUnavailable):
        await answer(model)
    assert [link.breaker.state for link in model.links] == [BreakerState.OPEN, BreakerState.OPEN]
    with pytest.raises(ProviderUnavailable):
        await answer(model)
    assert (first.asked, second.asked) == (1, 2)


async def test_failover_chains_share_breakers_but_report_to_their_own_call() -> None:
    dead, spare = DeadModel(), fallback()
    shared, _ = chain(dead, spare, failures=1)
    first: list[ProviderEvent] = []
    second: list[ProviderEvent] = []
    await answer(shared.with_reporter(first.append))
    await answer(shared.with_reporter(second.append))
    assert dead.asked == 1, "the second call skips the provider the first call found dead"
    assert [e.kind for e in first] == ["breaker", "failover"]
    assert [e.data.get("reason") for e in second] == ["circuit open"]


async def test_failover_warm_up_tolerates_an_unreachable_primary() -> None:
    dead = DeadModel()
    model, _ = chain(dead, fallback())
    await model.warm_up()  # logged, not raised: the fallback is warm and the call can go on


class Voice:
    """A synthesizer at its own sample rate, or one that fails before any audio."""

    def __init__(self, name: str, rate: int, *, dead: bool = False) -> None:
        self.name = name
        self.sample_rate = rate
        self.dead = dead

    async def synthesize(self, text: str) -> AsyncIterator[PCM16]:
        if self.dead:
            raise ProviderUnavailable("HTTP 503", provider=self.name, status=503)
        async for chunk in ToneSynthesizer(self.sample_rate, ms_per_char=10.0).synthesize(text):
            yield chunk

    async def warm_up(self) -> None:
        return None


async def test_failover_a_dead_voice_is_replaced_at_the_primary_sample_rate() -> None:
    events: list[ProviderEvent] = []
    voices: list[Link[SpeechSynthesizer]] = [
        Link("elevenlabs", Voice("elevenlabs", 24000, dead=True)),
        Link("piper", Voice("piper", 16000)),
    ]
    tts = FailoverSynthesizer(voices, events.append)
    audio = np.concatenate([c async for c in tts.synthesize("Hello there!")])
    assert tts.sample_rate == 24000
    expected = ToneSynthesizer(16000, ms_per_char=10.0).samples_for("Hello there!") * 24000 / 16000
    assert abs(len(audio) - expected) < 0.02 * expected, "resampled to the rate the call expects"
    assert [(e.data["from"], e.data["to"]) for e in events if e.kind == "failover"] == [
        ("elevenlabs", "piper")
    ]


class BrokenStream:
    """A recognition stream whose provider dies after ``pushes`` pushes."""

    def __init__(self, pushes: int) -> None:
        self.left = pushes

    async def push(self, pcm: PCM16) -> None:
        if self.left == 0:
            raise ProviderUnavailable("socket closed", provider="deepgram")
        self.left -= 1

    async def interim(self) -> Transcript:
        return Transcript("", False)

    async def finalize(self) -> Transcript:
        raise ProviderUnavailable("socket closed", provider="deepgram")

    async def aclose(self) -> None:
        return None


class BrokenRecognizer:
    name = "deepgram"
    sample_rate = 16000

    def __init__(self, pushes: int) -> None:
        self.pushes = pushes

    def open_stream(self, vocabulary: Sequence[str] = ()) -> BrokenStream:
        return BrokenStream(self.pushes)

    async def warm_up(self) -> None:
        return None


class Listening:
    """A fallback recogniser that remembers how much audio it was given."""

    name = "whisper"
    sample_rate = 16000

    def __init__(self) -> None:
        self.inner = ScriptedRecognizer(["open on sunday"])
        self.samples = 0

    def open_stream(self, vocabulary: Sequence[str] = ()) -> RecognitionStream:
        inner = self.inner.open_stream(vocabulary)
        outer = self

        class Counting:
            async def push(self, pcm: PCM16) -> None:
                outer.samples += len(pcm)
                await inner.push(pcm)

            async def interim(self) -> Transcript:
                return await inner.interim()

            async def finalize(self) -> Transcript:
                return await inner.finalize()

            async def aclose(self) -> None:
                await inner.aclose()

        return Counting()

    async def warm_up(self) -> None:
        return None


async def test_failover_recognition_moves_on_without_losing_the_words_so_far() -> None:
    events: list[ProviderEvent] = []
    spare = Listening()
    asr = FailoverRecognizer(
        [Link("deepgram", BrokenRecognizer(pushes=3)), Link("whisper", spare)], events.append
    )
    stream = asr.open_stream()
    frame = np.full(320, 1000, np.int16)
    for _ in range(5):
        await stream.push(frame)
    result = await stream.finalize()
    await stream.aclose()
    assert result.text == "open on sunday" and result.is_final
    assert spare.samples == 5 * 320, "the three frames the dead provider had were pushed again, once"
    assert [(e.data["from"], e.data["to"]) for e in events if e.kind == "failover"] == [
        ("deepgram", "whisper")
    ]


async def test_failover_cancelling_the_consumer_closes_the_provider_stream() -> None:
    closed = asyncio.Event()
    spare = ScriptedModel([], default_reply=" ".join(["word"] * 50), token_delay=0.01)

    class Watched:
        name = "spare"

        async def stream(self, *args: object, **kwargs: object) -> AsyncIterator[LLMChunk]:
            try:
                async for chunk in spare.stream(ASK):
                    yield chunk
            finally:
                closed.set()

        def count_tokens(self, text: str) -> int:
            return len(text)

        async def warm_up(self, *args: object) -> None:
            return None

    model, _ = chain(DeadModel(), Watched())
    stream = model.stream(ASK)
    await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    assert closed.is_set()


# --- built from an agent's settings --------------------------------------------------------------------

FAST: dict[str, Any] = {
    "vad": {"provider": "energy"},
    "asr": {"provider": "scripted", "options": {"lines": ["hello"]}},
    "llm": {"provider": "scripted", "options": {"default_reply": "Primary."}},
    "tts": {"provider": "tone"},
}


def test_failover_chains_are_built_over_the_shared_engines() -> None:
    plain = build_stack(AgentConfig.model_validate(FAST))
    chained = AgentConfig.model_validate(
        {
            **FAST,
            "llm": {**FAST["llm"], "fallbacks": [{"provider": "scripted", "options": {"token_delay": 0}}]},
        }
    )
    stack = build_stack(chained)
    assert isinstance(stack.llm, FailoverLanguageModel)
    assert stack.llm.links[0].engine is plain.llm, "the primary is the same engine a plain agent gets"
    assert [link.name for link in stack.llm.links] == ["scripted", "scripted"]
    assert build_stack(chained).llm is stack.llm
    again = build_stack(chained).llm
    assert isinstance(again, FailoverLanguageModel)
    assert again.links[0].breaker is stack.llm.links[0].breaker, "one breaker per provider instance"


def test_failover_models_the_operator_does_not_offer_are_refused_in_fallbacks_too() -> None:
    agent = AgentConfig.model_validate(
        {**FAST, "llm": {**FAST["llm"], "fallbacks": [{"provider": "openai", "options": {"model": "gpt-9"}}]}}
    )
    with pytest.raises(ProviderError, match=r"llm\.fallbacks\.0\.options\.model: 'gpt-9'"):
        check_operator_policy(agent)


def test_failover_agent_fallbacks_are_bounded_and_checked() -> None:
    with pytest.raises(ValidationError, match="at most 3"):
        AgentConfig.model_validate(
            {**FAST, "llm": {**FAST["llm"], "fallbacks": [{"provider": "scripted"}] * 4}}
        )
    with pytest.raises(ValidationError, match=r"fallbacks\.0\.options\.program"):
        AgentConfig.model_validate(
            {
                **FAST,
                "tts": {
                    "provider": "tone",
                    "fallbacks": [{"provider": "espeak", "options": {"program": "sh"}}],
                },
            }
        )
    with pytest.raises(ValidationError, match="vad has no fallbacks"):
        AgentConfig.model_validate(
            {**FAST, "vad": {"provider": "energy", "fallbacks": [{"provider": "silero"}]}}
        )


async def test_failover_a_failure_before_open_fallbacks_is_the_caller_s_error() -> None:
    clock = Clock()
    first, second = DeadModel(), DeadModel()
    model, _ = chain(first, second, failures=1, clock=clock)
    model.links[1].breaker.failed(model.links[1].breaker.acquire()[0])  # type: ignore[arg-type]
    with pytest.raises(ProviderUnavailable, match="connection refused"):
        await answer(model)
    assert (first.asked, second.asked) == (1, 0), "the open fallback is not asked after a failure"
