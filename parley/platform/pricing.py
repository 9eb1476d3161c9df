"""Prices, markup and currency: turning usage into money.

Prices are in USD per provider and model and come from ``prices.yaml`` beside this module: each
provider's published price with the page it was read on and the date (``source``, ``as_of``), so a figure
can be checked and its age seen. ``PARLEY_PRICING_FILE`` replaces that table by table. A model key is an
exact name, a glob (``aura-2*``) or ``*`` for any other model; ``*`` as a provider matches any provider.
Money is kept as integer micro-USD; the display currency (INR by default) uses a configured rate, never one
fetched at run time.
"""

from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from parley.config import Settings
from parley.store.types import MICROS

Prices = dict[str, dict[str, float]]

BUILTIN_PRICES = Path(__file__).resolve().parent / "prices.yaml"
"""The built-in table: published prices, each with its source and date."""

AsOf = Annotated[str, StringConstraints(pattern=r"^(\d{4}-\d{2}(-\d{2})?|unverified)$")]


class PriceSource(BaseModel):
    """Where a price was read and when: what lets an operator check a figure before billing by it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, max_length=500)
    """The page the figure was read on (a URL), or ``estimate`` for Parley's own guess."""
    as_of: AsOf
    """The date the figure was read from the provider (``YYYY-MM-DD`` or ``YYYY-MM``), or ``unverified``."""
    note: str = Field("", max_length=2000)
    verified: bool = True
    """False where sources disagree, the figure is undated, or it is derived rather than published."""


class PriceEntry(PriceSource):
    usd: float = Field(ge=0, allow_inf_nan=False)


Provenance = dict[str, dict[str, dict[str, PriceSource]]]
"""table -> provider -> model -> where that price came from."""

TABLES = (
    "asr_per_minute",
    "llm_input_per_million_tokens",
    "llm_output_per_million_tokens",
    "llm_audio_input_per_million_tokens",
    "llm_audio_output_per_million_tokens",
    "tts_per_million_characters",
    "speech_to_speech_per_minute",
    "telephony_per_minute",
    "sms_per_segment",
)


def _split(raw: dict[str, Any], where: str) -> tuple[dict[str, Prices], Provenance]:
    """A price file's tables as plain numbers, and the provenance of entries that carry one.

    An entry is either a number or a mapping with ``usd``, ``source`` and ``as_of`` (``PriceEntry``)."""
    prices: dict[str, Prices] = {}
    provenance: Provenance = {}
    for table, providers in raw.items():
        if table not in TABLES:
            raise ValueError(f"{where}: unknown price table {table!r} (tables: {', '.join(TABLES)})")
        if not isinstance(providers, dict):
            raise ValueError(f"{where}: {table} must map providers to models to prices")
        prices[table] = {}
        for provider, models in providers.items():
            if not isinstance(models, dict):
                raise ValueError(f"{where}: {table}.{provider} must map models to prices")
            prices[table][str(provider)] = {}
            for model, entry in models.items():
                key = f"{table}.{provider}.{model}"
                if isinstance(entry, dict):
                    try:
                        parsed = PriceEntry.model_validate(entry)
                    except ValidationError as exc:
                        raise ValueError(f"{where}: {key}: {exc.errors()[0]['msg']}") from exc
                    prices[table][str(provider)][str(model)] = parsed.usd
                    provenance.setdefault(table, {}).setdefault(str(provider), {})[str(model)] = (
                        PriceSource.model_validate(parsed.model_dump(exclude={"usd"}))
                    )
                elif isinstance(entry, int | float) and not isinstance(entry, bool) and entry >= 0:
                    prices[table][str(provider)][str(model)] = float(entry)
                else:
                    raise ValueError(f"{where}: {key} must be a price in USD or a mapping with usd")
    return prices, provenance


@cache
def _builtin() -> tuple[dict[str, Prices], Provenance]:
    try:
        raw = yaml.safe_load(BUILTIN_PRICES.read_text(encoding="utf-8")) or {}
    except OSError as exc:  # a wheel built without its package data
        raise RuntimeError(
            f"Parley's price table {BUILTIN_PRICES} is missing ({exc}); reinstall Parley, or set "
            "PARLEY_PRICING_FILE to a price file"
        ) from exc
    return _split(raw, str(BUILTIN_PRICES))


def _default(table: str) -> Prices:
    return copy.deepcopy(_builtin()[0].get(table, {"*": {"*": 0.0}}))


class PriceTable(BaseModel):
    """USD prices per table, provider and model; by default the published ones in ``prices.yaml``.
    Embedded engines are priced as an estimate of the compute they use."""

    model_config = ConfigDict(extra="forbid")

    asr_per_minute: Prices = Field(default_factory=lambda: _default("asr_per_minute"))
    llm_input_per_million_tokens: Prices = Field(
        default_factory=lambda: _default("llm_input_per_million_tokens")
    )
    llm_output_per_million_tokens: Prices = Field(
        default_factory=lambda: _default("llm_output_per_million_tokens")
    )
    llm_audio_input_per_million_tokens: Prices = Field(
        default_factory=lambda: _default("llm_audio_input_per_million_tokens")
    )
    llm_audio_output_per_million_tokens: Prices = Field(
        default_factory=lambda: _default("llm_audio_output_per_million_tokens")
    )
    tts_per_million_characters: Prices = Field(default_factory=lambda: _default("tts_per_million_characters"))
    speech_to_speech_per_minute: Prices = Field(
        default_factory=lambda: _default("speech_to_speech_per_minute")
    )
    telephony_per_minute: Prices = Field(default_factory=lambda: _default("telephony_per_minute"))
    sms_per_segment: Prices = Field(default_factory=lambda: _default("sms_per_segment"))
    provenance: Provenance = Field(default_factory=lambda: copy.deepcopy(_builtin()[1]))
    """Where each price came from, for the entries that say (all built-in ones do)."""

    def source_of(self, table: str, provider: str, model: str) -> PriceSource | None:
        """The provenance of the price ``price_key`` picks for (provider, model), if it has one."""
        key = price_key(getattr(self, table), provider, model)
        if key is None:
            return None
        return self.provenance.get(table, {}).get(key[0], {}).get(key[1])


def price_key(prices: Prices, provider: str, model: str) -> tuple[str, str] | None:
    """Which (provider, model) entry prices this: for the provider, then the model, the exact name, else
    the longest matching glob, else ``*``. A provider whose entries match no model falls through to the
    next matching provider key."""
    for provider_key in _matching(prices, provider):
        models = prices[provider_key]
        for model_key in _matching(models, model):
            return provider_key, model_key
    return None


def _matching(keys: dict[str, Any], name: str) -> list[str]:
    """The keys that match ``name``, best first: itself, the globs by length, ``*``."""
    globs = sorted(
        (k for k in keys if k != "*" and _is_glob(k) and fnmatch.fnmatchcase(name, k)), key=len, reverse=True
    )
    return [k for k in (name, *globs, "*") if k in keys]


def _is_glob(key: str) -> bool:
    return re.search(r"[*?\[]", key) is not None


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
    "llm_audio_input_tokens": Meter("llm_audio_input_per_million_tokens", "tokens", 1e-6, "1M tokens"),
    "llm_audio_output_tokens": Meter("llm_audio_output_per_million_tokens", "tokens", 1e-6, "1M tokens"),
    "tts_characters": Meter("tts_per_million_characters", "chars", 1e-6, "1M chars"),
    "speech_to_speech_seconds": Meter("speech_to_speech_per_minute", "s", 1 / 60, "minute"),
    "telephony_minutes": Meter("telephony_per_minute", "min", 1.0, "minute"),
    "sms_segments": Meter("sms_per_segment", "segments", 1.0, "segment"),
}


FALLBACK = ".fallbacks."
"""What joins a metered kind and a fallback's position: ``tts_characters.fallbacks.0`` is what the first
of the voice's ``fallbacks`` said, priced at that provider and model (a call has one line per kind)."""


def fallback_kind(kind: str, fallback: int) -> str:
    """The kind of what the role's ``fallbacks[fallback]`` served of ``kind``."""
    return f"{kind}{FALLBACK}{fallback}"


def split_kind(kind: str) -> tuple[str, int | None]:
    """A kind's metered thing and, for a fallback's share, the fallback's position."""
    base, _, position = kind.partition(FALLBACK)
    return (base, int(position)) if position.isdigit() else (kind, None)


def meter(kind: str) -> Meter:
    """The meter of a kind, a fallback's share included."""
    return METERS[split_kind(kind)[0]]


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
    per_unit = Decimal(repr(unit_price_micros)) / MICROS / Decimal(repr(meter(kind).scale))
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
        metered = meter(kind)
        prices: Prices = getattr(self.table, metered.table)
        key = price_key(prices, provider, model)
        if key is None:
            return 0.0
        return prices[key[0]][key[1]] * metered.scale * MICROS

    def price(self, kind: str, provider: str, model: str, quantity: float) -> PricedLine:
        unit_price = self.unit_price_micros(kind, provider, model)
        cost = round(unit_price * quantity)
        return PricedLine(
            kind,
            provider,
            model,
            quantity,
            meter(kind).unit,
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
    """The operator's price file (``PARLEY_PRICING_FILE``), or the built-in table. A file's tables
    replace the built-in ones they name; its entries may be bare numbers or carry a source and date."""
    if path is None:
        return PriceTable()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read pricing file {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"pricing file {path}: expected a mapping of price tables")
    prices, provenance = _split(raw, str(path))
    builtin = _builtin()[1]
    kept = {table: copy.deepcopy(rows) for table, rows in builtin.items() if table not in prices}
    return PriceTable.model_validate({**prices, "provenance": {**kept, **provenance}})
