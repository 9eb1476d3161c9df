"""A call's costs and transcript when a provider fails: what the voice never said is neither billed nor
in the transcript, and what a fallback did is billed at the fallback's price."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from parley.audio.frame import PCM16
from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.platform.billing import render_invoice_html
from parley.platform.schemas import CallDetail, InvoiceOut, UsageLineOut
from parley.platform.usage import measure
from parley.providers.errors import ProviderUnavailable
from parley.providers.failover import FailoverLanguageModel, FailoverSynthesizer, Link
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolSpec
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.tone import ToneSynthesizer
from parley.timeline.digest import build_turns
from parley.timeline.envelope import Envelope
from tests.engine.harness import RATE, agent, speech, stack
from tests.platform.live import call_record

QUESTION = "What is the capital of France?"


class VoiceThatBreaks(ToneSynthesizer):
    """Crashes a little way into any clause containing one of ``words`` (a fragment may be heard)."""

    def __init__(self, *words: str) -> None:
        super().__init__(sample_rate=RATE, ms_per_char=15)
        self.words = words

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        count = 0
        async for chunk in super().synthesize(text):
            if count == 3 and any(word in text for word in self.words):
                raise RuntimeError("tts engine crashed")
            yield chunk
            count += 1


class VoiceUnavailableFor(ToneSynthesizer):
    """A remote voice that refuses (before any audio) every clause containing one of ``words``."""

    def __init__(self, *words: str) -> None:
        super().__init__(sample_rate=RATE, ms_per_char=15)
        self.words = words

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        if any(word in text for word in self.words):
            raise ProviderUnavailable("503 from the voice", provider="elevenlabs", status=503)
        async for chunk in super().synthesize(text):
            yield chunk


class ModelUnavailable(ScriptedModel):
    """A remote language model whose host is gone."""

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        tool_choice: str | None = None,
        strict: bool = False,
    ) -> AsyncIterator[LLMChunk]:
        raise ProviderUnavailable("cannot reach the model", provider="openai")
        yield LLMChunk()  # pragma: no cover  (an async generator that fails when first asked)


async def live_call(
    settings: Settings, config: AgentConfig, engines: EngineStack, rules: Sequence[ScriptRule]
) -> CallDetail:
    """One call through the platform (greeting, one question, hang-up) on ``engines``; its record."""
    return await call_record(settings, config, engines, [speech(1.0)])


async def test_what_the_voice_failed_to_say_is_neither_billed_nor_in_the_transcript(
    db_url: str, tmp_path: Path
) -> None:
    # The greeting is announced clause by clause before it is voiced, and its second clause breaks; the
    # answer's second clause breaks too (while it is prepared, before its turn is committed).
    rules = [ScriptRule.say("capital", "Paris is the capital of France. Its river is the Seine.")]
    engines = stack([QUESTION], rules, ms_per_char=15)
    engines.tts = VoiceThatBreaks("Seine", "help with")
    config = agent(first_message="Hello, I am Ada. I can help with Paris.")
    detail = await live_call(Settings(data_dir=tmp_path, database_url=db_url), config, engines, rules)

    assert [(t.speaker, t.text) for t in detail.transcript] == [
        ("agent", "Hello, I am Ada."),
        ("user", QUESTION),
        ("agent", "Paris is the capital of France."),
    ]
    errors = [e.data for e in detail.events if e.type == "error"]
    assert [(e["stage"], e["segment"]) for e in errors] == [("tts", 1), ("tts", 1)]
    costs = {line.kind: line for line in detail.costs.lines}
    said = len("Hello, I am Ada.") + len("Paris is the capital of France.")
    assert costs["tts_characters"].quantity == said, "only the clauses the caller heard are billed"


async def test_speech_and_words_a_fallback_served_are_billed_at_the_fallbacks_price(
    db_url: str, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "tts_per_million_characters: {elevenlabs: {'*': 100.0}, deepgram: {'*': 30.0}}\n"
        "llm_input_per_million_tokens: {openai: {'*': 2.5}, llamacpp: {'*': 0.5}}\n"
        "llm_output_per_million_tokens: {openai: {'*': 10.0}, llamacpp: {'*': 1.0}}\n"
        "asr_per_minute: {'*': {'*': 0.0}}\n"
    )
    answer = "Paris, of course."
    rules = [ScriptRule.say("capital", answer)]
    engines = stack([QUESTION], rules, ms_per_char=15)
    # The remote voice says the greeting, then refuses the answer: the fallback voice says it.
    engines.tts = FailoverSynthesizer(
        [
            Link("elevenlabs", VoiceUnavailableFor("Paris")),
            Link("deepgram", ToneSynthesizer(sample_rate=RATE, ms_per_char=15)),
        ]
    )
    engines.llm = FailoverLanguageModel([Link("openai", ModelUnavailable([])), Link("llamacpp", engines.llm)])
    config = agent(
        first_message="Hello, how can I help?",
        llm={
            "provider": "openai",
            "options": {"model": "gpt-4o-mini"},
            "fallbacks": [{"provider": "llamacpp"}],
        },
        tts={
            "provider": "elevenlabs",
            "fallbacks": [{"provider": "deepgram", "options": {"model": "aura-2-thalia-en"}}],
        },
    )
    settings = Settings(data_dir=tmp_path, database_url=db_url, pricing_file=prices, cost_markup_percent=0.0)
    detail = await live_call(settings, config, engines, rules)

    assert [(t.speaker, t.text) for t in detail.transcript][-1] == ("agent", answer)
    hops = [
        (e.data["role"], e.data["from"], e.data["to"]) for e in detail.events if e.type == "provider.failover"
    ]
    assert ("tts", "elevenlabs", "deepgram") in hops and ("llm", "openai", "llamacpp") in hops
    lines = {line.kind: line for line in detail.costs.lines}
    greeting, fallback_voice = lines["tts_characters"], lines["tts_characters.fallbacks.0"]
    assert (greeting.provider, greeting.quantity) == ("elevenlabs", len("Hello, how can I help?"))
    assert greeting.cost_usd == Decimal(len("Hello, how can I help?")) * Decimal("0.0001")
    assert (fallback_voice.provider, fallback_voice.model) == ("deepgram", "aura-2-thalia-en")
    assert fallback_voice.quantity == len(answer)
    assert fallback_voice.price_usd == Decimal("30") and fallback_voice.price_unit == "1M chars"
    assert fallback_voice.cost_usd == Decimal(len(answer)) * Decimal("0.00003")
    # The model's only request hopped: all its tokens are the fallback's, none the dead primary's.
    assert "llm_input_tokens" not in lines and "llm_output_tokens" not in lines
    words_in, words_out = lines["llm_input_tokens.fallbacks.0"], lines["llm_output_tokens.fallbacks.0"]
    assert words_in.provider == words_out.provider == "llamacpp"
    assert words_in.quantity > 0 and words_out.quantity > 0
    assert words_out.price_usd == Decimal("1")
    total = sum((line.cost_usd for line in detail.costs.lines), Decimal(0))
    assert detail.costs.total_usd == total


def timeline(*items: tuple[str, dict[str, Any]]) -> list[Envelope]:
    return [Envelope("s", i + 1, kind, float(i), 0.0, data) for i, (kind, data) in enumerate(items)]


def test_a_clause_is_billed_at_the_voice_of_its_last_hop_and_a_round_at_its_model() -> None:
    events = timeline(
        ("llm.request", {"reply_id": "r1", "round": 0}),
        ("provider.failover", {"role": "llm", "from": "openai", "to": "llamacpp", "fallback": 0,
                               "reply_id": "r1"}),
        ("llm.completed", {"reply_id": "r1", "round": 0, "input_tokens": 100, "output_tokens": 10}),
        ("llm.request", {"reply_id": "r1", "round": 1}),  # after a tool: the primary answers again
        ("llm.completed", {"reply_id": "r1", "round": 1, "input_tokens": 250, "output_tokens": 30}),
        ("agent.text", {"reply_id": "r1", "segment": 0, "text": "Sure thing."}),
        ("agent.text", {"reply_id": "r1", "segment": 1, "text": "It is done."}),
        ("provider.failover", {"role": "tts", "from": "elevenlabs", "to": "deepgram", "fallback": 0,
                               "reply_id": "r1", "segment": 1}),
        ("provider.failover", {"role": "tts", "from": "deepgram", "to": "piper", "fallback": 1,
                               "reply_id": "r1", "segment": 1, "reason": "circuit open"}),
        ("agent.reply.done", {"reply_id": "r1", "input_tokens": 250, "output_tokens": 30}),
    )  # fmt: skip
    assert measure(events, transport="websocket", duration_s=10.0) == {
        "llm_input_tokens": 150.0,
        "llm_output_tokens": 20.0,
        "llm_input_tokens.fallbacks.0": 100.0,
        "llm_output_tokens.fallbacks.0": 10.0,
        "tts_characters": float(len("Sure thing.")),
        "tts_characters.fallbacks.1": float(len("It is done.")),
    }


def test_the_error_message_said_instead_is_billed_and_kept_unless_it_failed_too() -> None:
    said_instead = timeline(
        ("agent.text", {"reply_id": "r1", "segment": 0, "text": "Our hours are nine to five."}),
        ("agent.text", {"reply_id": "r1", "segment": 1, "text": "Every day."}),
        ("error", {"where": "tts", "stage": "tts", "reply_id": "r1", "segment": 0, "error": "boom"}),
        ("agent.text", {"reply_id": "r1", "segment": 2, "text": "Sorry, say again?"}),
        ("agent.reply.done", {"reply_id": "r1"}),
    )
    assert measure(said_instead, transport="websocket", duration_s=5.0) == {
        "tts_characters": float(len("Sorry, say again?"))
    }
    assert [t.text for t in build_turns(said_instead)] == ["Sorry, say again?"]
    failed_too = [
        *said_instead[:4],
        Envelope("s", 5, "error", 4.0, 0.0, {"stage": "tts", "reply_id": "r1", "segment": 2, "error": "x"}),
        Envelope("s", 6, "agent.reply.done", 5.0, 0.0, {"reply_id": "r1"}),
    ]
    assert measure(failed_too, transport="websocket", duration_s=5.0) == {}
    assert build_turns(failed_too) == [], "the caller heard nothing"


def test_an_invoice_names_a_fallbacks_line() -> None:
    line = UsageLineOut(
        kind="tts_characters.fallbacks.0",
        provider="deepgram",
        model="aura-2-thalia-en",
        unit="chars",
        quantity=12.0,
        calls=1,
        cost_usd=Decimal("0.00036"),
        markup_usd=Decimal(0),
    )
    invoice = InvoiceOut.model_validate(
        {
            "id": "inv_1",
            "number": "PAR-202601-X",
            "organization": "Acme",
            "period_start": "2026-01-01",
            "period_end": "2026-01-31",
            "status": "draft",
            "lines": [line],
            "subtotal_usd": "0.00036",
            "markup_usd": "0",
            "total_usd": "0.00036",
            "currency": "USD",
            "exchange_rate": "1",
            "total": "0.00",
            "created_at": "2026-01-31T00:00:00Z",
        }
    )
    assert "Speech synthesis (fallback 1)" in render_invoice_html(invoice)
