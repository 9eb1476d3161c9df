"""The built-in price table: published prices, each with where and when it was read, priced as expected."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from parley.engine.agent import AgentConfig
from parley.platform.pricing import BUILTIN_PRICES, METERS, TABLES, PriceTable, Pricing, load_table
from parley.platform.usage import breakdown, measure, price_usage, providers
from parley.timeline.envelope import Envelope


def test_every_built_in_price_says_where_and_when_it_was_read() -> None:
    raw = yaml.safe_load(BUILTIN_PRICES.read_text(encoding="utf-8"))
    assert set(raw) == set(TABLES) == {meter.table for meter in METERS.values()}
    table = PriceTable()
    for name, rows in raw.items():
        for provider, models in rows.items():
            for model, entry in models.items():
                where = f"{name}.{provider}.{model}"
                assert {"usd", "source", "as_of"} <= set(entry), where
                assert entry["source"] == "estimate" or entry["source"].startswith("https://"), where
                assert re.fullmatch(r"\d{4}-\d{2}(-\d{2})?|unverified", entry["as_of"]), where
                if entry["as_of"] == "unverified":
                    assert entry.get("verified") is False, f"{where}: an undated figure is not verified"
                assert getattr(table, name)[provider][model] == entry["usd"]
                assert table.provenance[name][provider][model].source == entry["source"]


def test_the_providers_prices_are_the_published_ones() -> None:
    pricing = Pricing(rates={"INR": 83.0})
    cases = [  # (kind, provider, model, quantity, expected micro-USD)
        ("asr_seconds", "deepgram", "nova-3", 60.0, 4_800),  # $0.0048/min streaming
        ("asr_seconds", "openai", "gpt-4o-mini-transcribe", 120.0, 6_000),  # $0.003/min
        ("tts_characters", "deepgram", "aura-2-thalia-en", 1_000.0, 30_000),  # $0.030 per 1k chars
        ("tts_characters", "deepgram", "aura-asteria-en", 1_000.0, 15_000),  # Aura-1
        ("tts_characters", "elevenlabs", "eleven_flash_v2_5", 1_000.0, 50_000),
        ("tts_characters", "elevenlabs", "eleven_multilingual_v2", 1_000.0, 100_000),
        ("tts_characters", "openai", "tts-1", 1_000_000.0, 15_000_000),
        ("llm_input_tokens", "openai", "gpt-4o-mini", 1_000_000.0, 150_000),
        ("llm_output_tokens", "openai", "gpt-4.1-mini", 1_000_000.0, 1_600_000),
        ("llm_audio_input_tokens", "openai_realtime", "gpt-realtime", 1_000_000.0, 32_000_000),
        ("llm_audio_output_tokens", "openai_realtime", "gpt-realtime-mini", 1_000_000.0, 20_000_000),
        ("speech_to_speech_seconds", "elevenlabs_convai", "", 90.0, 120_000),  # $0.08/min
        ("telephony_minutes", "twilio", "inbound", 2.0, 17_000),
        ("sms_segments", "twilio", "", 3.0, 24_900),  # $0.0083 a segment
        ("tts_characters", "tone", "", 1_000.0, 0),  # the test voice costs nothing
    ]
    for kind, provider, model, quantity, micros in cases:
        assert pricing.price(kind, provider, model, quantity).cost_micros == micros, (kind, provider, model)


def test_a_sample_call_costs_what_its_parts_cost() -> None:
    """A two-minute Spanish phone call on Deepgram, OpenAI and ElevenLabs."""
    events = [
        Envelope("s", 1, "transcript.final", 0.0, 0.0, {"text": "hola", "audio_seconds": 30.0}),
        Envelope(
            "s", 2, "llm.completed", 1.0, 0.0, {"reply_id": "r1", "input_tokens": 2000, "output_tokens": 50}
        ),
        Envelope("s", 3, "agent.text", 2.0, 0.0, {"reply_id": "r1", "text": "x" * 500}),
    ]
    config = AgentConfig.model_validate(
        {
            "language": "es",
            "asr": {"provider": "deepgram", "options": {"model": "nova-3", "language": "es"}},
            "llm": {"provider": "openai", "options": {"model": "gpt-4o-mini"}},
            "tts": {"provider": "elevenlabs", "options": {"model": "eleven_flash_v2_5"}},
        }
    )
    pricing = Pricing(rates={"INR": 83.0})
    lines = price_usage(
        pricing, measure(events, transport="twilio", duration_s=100.0), config, "twilio", "outbound"
    )
    costs = {line.kind: line.cost_micros for line in lines}
    assert costs == {
        "asr_seconds": 2_400,  # half a minute at $0.0048
        "llm_input_tokens": 300,  # 2,000 tokens at $0.15/1M
        "llm_output_tokens": 30,  # 50 at $0.60/1M
        "tts_characters": 25_000,  # 500 characters at $0.05 per 1k
        "telephony_minutes": 28_000,  # two started minutes outbound at $0.014
    }
    assert breakdown(pricing, lines).subtotal_usd == Decimal("0.055730")


def test_a_speech_to_speech_call_is_priced_by_minutes_and_audio_tokens() -> None:
    events = [
        Envelope("s", 1, "session.started", 0.0, 0.0, {"agent": "a", "engine": "openai_realtime"}),
        Envelope(
            "s",
            2,
            "llm.completed",
            1.0,
            0.0,
            {
                "reply_id": "r1",
                "input_tokens": 1_100,  # a Realtime usage counts text and audio together
                "output_tokens": 900,
                "input_audio_tokens": 1_000,
                "output_audio_tokens": 800,
            },
        ),
        Envelope("s", 3, "agent.text", 2.0, 0.0, {"reply_id": "r1", "text": "hello"}),
    ]
    quantities = measure(events, transport="websocket", duration_s=30.0)
    assert quantities == {
        "llm_input_tokens": 100.0,
        "llm_output_tokens": 100.0,
        "llm_audio_input_tokens": 1_000.0,
        "llm_audio_output_tokens": 800.0,
        "speech_to_speech_seconds": 30.0,
    }, "the engine's own voice is not billed again as speech synthesis"


def test_an_operators_file_still_replaces_tables_and_may_cite_its_sources(tmp_path: Path) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "tts_per_million_characters: {'*': {'*': 30.0}}\n"
        "asr_per_minute:\n"
        "  deepgram:\n"
        "    '*': {usd: 0.004, source: 'https://example.com/contract', as_of: '2026-10-01'}\n"
    )
    table = load_table(prices)
    pricing = Pricing(table, rates={"INR": 83.0})
    assert pricing.price("tts_characters", "elevenlabs", "eleven_v3", 1000.0).cost_micros == 30_000
    assert pricing.price("asr_seconds", "deepgram", "nova-3", 60.0).cost_micros == 4_000
    assert table.source_of("asr_per_minute", "deepgram", "nova-3") is not None
    assert table.source_of("tts_per_million_characters", "elevenlabs", "x") is None, "a bare number"
    assert table.source_of("llm_input_per_million_tokens", "openai", "gpt-4o-mini") is not None, "built-in"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tts_per_minute: {}\n", "unknown price table 'tts_per_minute'"),
        ("asr_per_minute: {deepgram: {'*': -1}}\n", "asr_per_minute.deepgram.\\*"),
        ("asr_per_minute: {deepgram: {'*': {usd: 1, source: x, as_of: yesterday}}}\n", "String should match"),
    ],
)
def test_a_bad_price_file_is_refused_with_the_entry_named(tmp_path: Path, content: str, message: str) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_table(prices)


def test_a_spanish_agent_is_priced_for_the_engines_it_really_used() -> None:
    who = providers(AgentConfig(language="es"), "websocket")
    assert who["asr_seconds"] == ("whisper", "base"), "tiny.en hears no Spanish"
    assert who["tts_characters"] == ("espeak", "es"), "the packaged Piper voice speaks no Spanish"
