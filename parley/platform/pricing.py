"""Prices, markup and currency: turning usage into money.

Prices are in USD per provider and model (``"*"`` matches any model, or any provider) and come from a
YAML file (``PARLEY_PRICING_FILE``) or the built-in table below. Money is kept as integer micro-USD;
the display currency (INR by default) uses a configured rate, never one fetched at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from parley.config import Settings
from parley.store.types import MICROS

Prices = dict[str, dict[str, float]]


class PriceTable(BaseModel):
    """USD prices. The built-in figures are placeholders of the right order of magnitude: set your own.
    Embedded engines are priced as an estimate of the compute they use."""

    model_config = ConfigDict(extra="forbid")

    asr_per_minute: Prices = Field(
        default_factory=lambda: {
            "whisper": {"*": 0.0006},
            "deepgram": {"*": 0.0043},
            "openai": {"*": 0.006},
            "*": {"*": 0.0},
        }
    )
    llm_input_per_million_tokens: Prices = Field(
        default_factory=lambda: {
            "llamacpp": {"*": 0.02},
            "openai": {"gpt-4o-mini": 0.15, "*": 2.5},
            "*": {"*": 0.0},
        }
    )
    llm_output_per_million_tokens: Prices = Field(
        default_factory=lambda: {
            "llamacpp": {"*": 0.04},
            "openai": {"gpt-4o-mini": 0.6, "*": 10.0},
            "*": {"*": 0.0},
        }
    )
    tts_per_million_characters: Prices = Field(
        default_factory=lambda: {
            "piper": {"*": 1.0},
            "espeak": {"*": 0.5},
            "deepgram": {"*": 15.0},
            "elevenlabs": {"*": 180.0},
            "*": {"*": 0.0},
        }
    )
    telephony_per_minute: Prices = Field(default_factory=lambda: {"twilio": {"*": 0.0085}, "*": {"*": 0.0}})


@dataclass(frozen=True, slots=True)
class Meter:
    """A metered thing: which price list applies, its unit, and price units per unit of quantity."""

    table: str
    unit: str
    scale: float
    price_unit: str
    """What a table price is per, as people read it."""


METERS: dict[str, Meter] = {
    "asr_seconds": Meter("asr_per_minute", "s", 1 / 60, "minute"),
    "llm_input_tokens": Meter("llm_input_per_million_tokens", "tokens", 1e-6, "1M tokens"),
    "llm_output_tokens": Meter("llm_output_per_million_tokens", "tokens", 1e-6, "1M tokens"),
    "tts_characters": Meter("tts_per_million_characters", "chars", 1e-6, "1M chars"),
    "telephony_minutes": Meter("telephony_per_minute", "min", 1.0, "minute"),
}


@dataclass(frozen=True, slots=True)
class PricedLine:
    kind: str
    provider: str
    model: str
    quantity: float
    unit: str
    unit_price_micros: float
    cost_micros: int
    markup_micros: int


def table_price(kind: str, unit_price_micros: float) -> Decimal:
    """A per-unit price back in the table's terms (USD per minute, per 1M tokens …)."""
    per_unit = Decimal(repr(unit_price_micros)) / MICROS / Decimal(repr(METERS[kind].scale))
    return per_unit.quantize(Decimal("0.000001"))


def money(micros: int | float) -> Decimal:
    """Micro-USD to USD, to the micro-dollar."""
    return (Decimal(round(micros)) / MICROS).quantize(Decimal("0.000001"))


class Pricing:
    def __init__(
        self,
        table: PriceTable | None = None,
        *,
        markup_percent: float = 0.0,
        currency: str = "INR",
        rates: dict[str, float] | None = None,
    ) -> None:
        self.table = table or PriceTable()
        self.markup_percent = markup_percent
        self.currency = currency.upper()
        self.rates = {k.upper(): v for k, v in (rates or {"USD": 1.0, "INR": 83.0}).items()}
        self.rates.setdefault("USD", 1.0)
        if self.currency not in self.rates:
            raise ValueError(
                f"no exchange rate configured for display currency {self.currency} "
                f"(PARLEY_CURRENCY_RATES has {sorted(self.rates)})"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> Pricing:
        return cls(
            load_table(settings.pricing_file),
            markup_percent=settings.cost_markup_percent,
            currency=settings.display_currency,
            rates=settings.currency_rates,
        )

    def unit_price_micros(self, kind: str, provider: str, model: str) -> float:
        """Micro-USD per unit of ``kind`` (per second, token, character or minute)."""
        meter = METERS[kind]
        prices: Prices = getattr(self.table, meter.table)
        for provider_key in (provider, "*"):
            models = prices.get(provider_key)
            if models is None:
                continue
            for model_key in (model, "*"):
                if model_key in models:
                    return models[model_key] * meter.scale * MICROS
        return 0.0

    def price(self, kind: str, provider: str, model: str, quantity: float) -> PricedLine:
        unit_price = self.unit_price_micros(kind, provider, model)
        cost = round(unit_price * quantity)
        return PricedLine(
            kind,
            provider,
            model,
            quantity,
            METERS[kind].unit,
            unit_price,
            cost,
            round(cost * self.markup_percent / 100),
        )

    @property
    def rate(self) -> Decimal:
        return Decimal(str(self.rates[self.currency]))

    def convert(self, micros: int, currency: str | None = None) -> Decimal:
        """Micro-USD in the display currency (or ``currency``), to the cent/paisa."""
        return to_currency(micros, Decimal(str(self.rates[(currency or self.currency).upper()])))


def to_currency(micros: int, rate: Decimal) -> Decimal:
    return (Decimal(micros) * rate / MICROS).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def load_table(path: Path | None) -> PriceTable:
    if path is None:
        return PriceTable()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read pricing file {path}: {exc}") from exc
    return PriceTable.model_validate(raw)
