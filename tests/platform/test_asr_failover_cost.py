"""What a fallback recogniser heard is billed at the fallback's price, as a line of its own: a caller's
turn whose recognition failed over is not priced at the agent's primary recogniser."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.session import EngineStack
from parley.platform.schemas import CallDetail
from parley.platform.usage import measure
from parley.providers.asr.base import Transcript
from parley.providers.asr.scripted import ScriptedRecognizer, ScriptedStream
from parley.providers.errors import ProviderUnavailable
from parley.providers.failover import FailoverRecognizer, Link
from parley.providers.llm.scripted import ScriptRule
from parley.timeline.envelope import Envelope
from tests.engine.harness import agent, speech, stack
from tests.platform.live import call_record

FIRST, SECOND = "When do you open?", "And on Sunday?"


class DownForTheFirstTurn(ScriptedRecognizer):
    """A remote recogniser whose socket dies on the call's first utterance, then serves again."""

    name = "deepgram"

    def __init__(self, lines: list[str]) -> None:
        super().__init__(lines)
        self.failed = False

    def open_stream(self, vocabulary: Sequence[str] = ()) -> ScriptedStream:
        outer = self

        class Stream(ScriptedStream):
            async def finalize(self) -> Transcript:
                if not outer.failed:
                    outer.failed = True
                    raise ProviderUnavailable("socket closed", provider="deepgram")
                return await super().finalize()

        return Stream(self)


async def two_turns(settings: Settings, config: AgentConfig, engines: EngineStack) -> CallDetail:
    """One call through the platform (greeting, two spoken turns, hang-up); its record."""
    return await call_record(settings, config, engines, [speech(1.0), speech(1.5)])


async def test_the_turn_a_fallback_recogniser_heard_is_billed_at_its_price(
    db_url: str, tmp_path: Path
) -> None:
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "asr_per_minute: {deepgram: {'*': 6.0}, whisper: {'*': 0.6}}\n"
        "llm_input_per_million_tokens: {'*': {'*': 0.0}}\n"
        "llm_output_per_million_tokens: {'*': {'*': 0.0}}\n"
        "tts_per_million_characters: {'*': {'*': 0.0}}\n"
    )
    rules = [ScriptRule.say("open", "At nine."), ScriptRule.say("Sunday", "At ten on Sunday.")]
    engines = stack([], rules, ms_per_char=15)
    engines.recognizer = FailoverRecognizer(
        [Link("deepgram", DownForTheFirstTurn([SECOND])), Link("whisper", ScriptedRecognizer([FIRST]))]
    )
    config = agent(
        first_message="Hello.",
        asr={
            "provider": "deepgram",
            "options": {"model": "nova-3"},
            "fallbacks": [{"provider": "whisper", "options": {"model": "tiny.en"}}],
        },
    )
    settings = Settings(data_dir=tmp_path, database_url=db_url, pricing_file=prices, cost_markup_percent=0.0)
    detail = await two_turns(settings, config, engines)

    assert [t.text for t in detail.transcript if t.speaker == "user"] == [FIRST, SECOND]
    finals = [e.data for e in detail.events if e.type == "transcript.final"]
    lines = {line.kind: line for line in detail.costs.lines}
    assert "asr_seconds.fallbacks.0" in lines, f"all recognition priced at the primary: {sorted(lines)}"
    heard_by_fallback, heard_by_primary = lines["asr_seconds.fallbacks.0"], lines["asr_seconds"]
    assert (heard_by_fallback.provider, heard_by_fallback.model) == ("whisper", "tiny.en")
    assert heard_by_fallback.quantity == finals[0]["audio_seconds"] > 0
    assert heard_by_fallback.price_usd == Decimal("0.6") and heard_by_fallback.price_unit == "minute"
    assert (heard_by_primary.provider, heard_by_primary.model) == ("deepgram", "nova-3")
    assert heard_by_primary.quantity == finals[1]["audio_seconds"] > 0, "the primary heard turn two"
    assert heard_by_primary.price_usd == Decimal("6")
    assert heard_by_fallback.cost_usd < heard_by_primary.cost_usd
    assert detail.costs.total_usd == sum((line.cost_usd for line in detail.costs.lines), Decimal(0))
    # The timeline says why: the recognition hop names the hearing that made turn one's transcript.
    hops = [e.data for e in detail.events if e.type == "provider.failover"]
    assert [(h["role"], h["from"], h["to"]) for h in hops] == [("asr", "deepgram", "whisper")]
    assert hops[0]["recognition"] == finals[0]["recognition"] != finals[1]["recognition"]


def timeline(*items: tuple[str, dict[str, Any]]) -> list[Envelope]:
    return [Envelope("s", i + 1, kind, float(i), 0.0, data) for i, (kind, data) in enumerate(items)]


def test_a_turns_seconds_go_to_the_recogniser_of_its_hearings_last_hop() -> None:
    events = timeline(
        ("provider.failover", {"role": "asr", "from": "deepgram", "to": "openai", "fallback": 0,
                               "recognition": 1}),
        ("provider.failover", {"role": "asr", "from": "openai", "to": "whisper", "fallback": 1,
                               "recognition": 1, "reason": "circuit open"}),
        ("transcript.final", {"text": "Hello?", "source": "speech", "audio_seconds": 1.25,
                              "recognition": 1}),
        # the caller went on after a pause: heard again whole on a fresh stream, by the primary
        ("provider.failover", {"role": "asr", "from": "deepgram", "to": "openai", "fallback": 0,
                               "recognition": 2}),
        ("transcript.final", {"text": "Are you open?", "source": "speech", "audio_seconds": 2.0,
                              "recognition": 3}),
        ("transcript.final", {"text": "typed", "source": "text"}),
        ("transcript.final", {"text": "from before", "source": "speech", "audio_seconds": 0.5}),
    )  # fmt: skip
    assert measure(events, transport="websocket", duration_s=10.0) == {
        "asr_seconds": 2.5,
        "asr_seconds.fallbacks.1": 1.25,
    }
