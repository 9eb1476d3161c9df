"""Usage read off a timeline, priced per provider and model, with markup and a display currency."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from parley.engine.agent import AgentConfig
from parley.platform.pricing import Pricing, load_table
from parley.platform.usage import breakdown, measure, price_usage
from parley.timeline.envelope import Envelope


def events(*items: tuple[str, dict[str, object]]) -> list[Envelope]:
    return [Envelope("s", i + 1, kind, float(i), 0.0, data) for i, (kind, data) in enumerate(items)]


CALL = events(
    ("transcript.final", {"text": "hi", "audio_seconds": 1.25, "source": "speech"}),
    ("llm.completed", {"reply_id": "r1", "round": 0, "input_tokens": 100, "output_tokens": 5}),  # speculative
    ("llm.completed", {"reply_id": "r2", "round": 0, "input_tokens": 120, "output_tokens": 8}),
    (
        "llm.completed",
        {"reply_id": "r2", "round": 1, "input_tokens": 260, "output_tokens": 20},
    ),  # after a tool
    ("agent.text", {"reply_id": "r2", "text": "Hello there."}),
    ("agent.reply.done", {"reply_id": "r2", "input_tokens": 260, "output_tokens": 20}),
    ("transcript.final", {"text": "typed", "source": "text"}),
)


def test_usage_counts_every_model_call_once() -> None:
    assert measure(CALL, transport="websocket", duration_s=61.0) == {
        "asr_seconds": 1.25,
        "llm_input_tokens": 360.0,
        "llm_output_tokens": 25.0,
        "tts_characters": 12.0,
    }
    phone = measure(CALL, transport="twilio", duration_s=61.0)
    assert phone["telephony_minutes"] == 2.0, "carriers bill each started minute"


def test_a_coached_rooms_legs_are_billed_for_their_recognition() -> None:
    room = events(
        ("room.utterance", {"participant_id": "p1", "role": "customer", "text": "Hi", "start": 0.0,
                            "end": 1.5, "audio_seconds": 1.5}),
        ("room.utterance", {"participant_id": "p2", "role": "rep", "text": "Hello", "start": 2.0,
                            "end": 4.0, "audio_seconds": 2.25}),
    )  # fmt: skip
    assert measure(room, transport="websocket", duration_s=10.0) == {"asr_seconds": 3.75}


def test_prices_follow_provider_and_model_with_markup_and_rupees(tmp_path: Path) -> None:
    table = tmp_path / "prices.yaml"
    table.write_text(
        "asr_per_minute: {whisper: {base: 0.0060, '*': 0.0100}}\n"
        "llm_input_per_million_tokens: {openai: {gpt-4o-mini: 0.15}}\n"
        "llm_output_per_million_tokens: {openai: {gpt-4o-mini: 0.60}}\n"
        "tts_per_million_characters: {'*': {'*': 30.0}}\n"
        "telephony_per_minute: {twilio: {'*': 0.0085}}\n"
    )
    pricing = Pricing(load_table(table), markup_percent=20, currency="INR", rates={"INR": 84.5})
    config = AgentConfig.model_validate(
        {
            "asr": {"provider": "whisper", "options": {"model": "base"}},
            "llm": {"provider": "openai", "options": {"model": "gpt-4o-mini"}},
            "tts": {"provider": "espeak"},
        }
    )
    lines = price_usage(
        pricing,
        {
            "asr_seconds": 90.0,
            "llm_input_tokens": 1_000_000.0,
            "llm_output_tokens": 500_000.0,
            "tts_characters": 10_000.0,
            "telephony_minutes": 2.0,
        },
        config,
        "twilio",
    )
    costs = {line.kind: line.cost_micros for line in lines}
    assert costs == {
        "asr_seconds": 9_000,
        "llm_input_tokens": 150_000,
        "llm_output_tokens": 300_000,
        "tts_characters": 300_000,
        "telephony_minutes": 17_000,
    }
    total = breakdown(pricing, lines)
    assert total.subtotal_usd == Decimal("0.776000")
    assert total.markup_usd == Decimal("0.155200")
    assert total.total_usd == Decimal("0.931200")
    assert total.currency == "INR" and total.total == Decimal("78.69")  # 0.9312 × 84.5
    by_kind = {line.kind: line for line in total.lines}
    assert (
        by_kind["asr_seconds"].price_usd == Decimal("0.006") and by_kind["asr_seconds"].price_unit == "minute"
    )
    assert by_kind["llm_output_tokens"].price_usd == Decimal("0.6")


def test_an_unpriced_provider_costs_nothing_and_a_missing_rate_is_an_error() -> None:
    pricing = Pricing(rates={"INR": 83.0})
    line = pricing.price("tts_characters", "someone-new", "", 1000.0)
    assert line.cost_micros == 0
    with pytest.raises(ValueError, match="EUR"):
        Pricing(currency="EUR", rates={"INR": 83.0})
