"""An agent's ``coaching:`` section: which moments of a coached call fire a hint for the rep, and how.

Tenant input (agent YAML and the agents API): every list and text is bounded, and phrases are plain
words, never regular expressions. A phrase is lower-cased words matched on word boundaries; ``*`` between
two words stands for up to three words ("too * expensive"). The matcher (``parley.analysis.triggers``)
builds its own matching from the words, so nothing a tenant writes is compiled or run as a pattern.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from parley.inputs import SafeStr

MAX_PHRASES = 100
MAX_PHRASE_CHARS = 80
MAX_WILDCARDS = 3
"""``*`` per phrase; each stands for 0 to ``WILDCARD_WORDS`` words."""
WILDCARD_WORDS = 3
WILDCARD = "*"

METRIC_TRIGGERS = ("long_monologue", "dead_air", "negative_sentiment")
"""Triggers fired by conversation metrics (measured, not matched): they take no phrases."""
COMPETITOR_TRIGGER = "competitor_mention"
"""Its phrases are the team's ``competitors`` added to its own."""
NEXT_STEP_TRIGGER = "next_step_missing"
"""Deferred: a customer's commitment (its phrases) that the rep does not answer with a next step."""

_HAS_WORD = re.compile(r"[^\W_]")


def check_phrase(value: str) -> str:
    """Plain words, with ``*`` only as a whole word between two others; spaces collapsed."""
    words = value.split()
    if not words or not _HAS_WORD.search(value):
        raise PydanticCustomError("coaching_phrase", "a phrase needs at least one word")
    for i, word in enumerate(words):
        if WILDCARD in word and word != WILDCARD:
            raise PydanticCustomError(
                "coaching_phrase",
                "'*' stands alone between words (as in 'too * expensive'): {phrase!r}",
                {"phrase": value},
            )
        if word == WILDCARD and (i == 0 or i == len(words) - 1 or words[i - 1] == WILDCARD):
            raise PydanticCustomError(
                "coaching_phrase", "'*' goes between two words, once in a row: {phrase!r}", {"phrase": value}
            )
    if words.count(WILDCARD) > MAX_WILDCARDS:
        raise PydanticCustomError(
            "coaching_phrase",
            "at most {limit} '*' in a phrase: {phrase!r}",
            {"limit": MAX_WILDCARDS, "phrase": value},
        )
    return " ".join(words)


Phrase = Annotated[SafeStr, Field(min_length=1, max_length=MAX_PHRASE_CHARS), AfterValidator(check_phrase)]
TriggerName = Annotated[str, Field(pattern=r"^[a-z0-9_]{1,40}$")]
Speaker = Literal["customer", "rep", "any"]


class TriggerSettings(BaseModel):
    """One coaching trigger: who says what, and the hint the rep gets."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: TriggerName
    speaker: Speaker = Field("customer", description="whose words are matched; any: everyone but the coach")
    phrases: list[Phrase] = Field(
        default_factory=list,
        max_length=MAX_PHRASES,
        description="words that fire the trigger, case-insensitive, whole words; '*' between words stands "
        "for up to three words; for next_step_missing: the customer's commitment",
    )
    unless: list[Phrase] = Field(
        default_factory=list,
        max_length=MAX_PHRASES,
        description="phrases that cancel a match anywhere in the same utterance (same rules)",
    )
    next_steps: list[Phrase] = Field(
        default_factory=list,
        max_length=MAX_PHRASES,
        description="next_step_missing only: what the rep says that counts as a next step (empty: built-in)",
    )
    negation: bool | None = Field(
        None,
        description="a 'not/no/never' in the four words before a phrase, in the same clause, cancels it; "
        "unset: on for price_objection, competitor_mention, cancellation_intent and next_step_missing, "
        "off otherwise",
    )
    hint: SafeStr = Field("", max_length=200, description="the hint when the language model is off or slow")
    cooldown_s: float = Field(30.0, ge=0, le=3600, description="quiet time after this trigger fires")
    max_per_call: int = Field(3, ge=1, le=100, description="fires at most this often in one call")
    whisper: bool = Field(True, description="whisper this hint to the rep when audio whispers are on")
    enabled: bool = True

    @model_validator(mode="after")
    def _complete(self) -> TriggerSettings:
        metric = self.name in METRIC_TRIGGERS
        if metric and (self.phrases or self.unless):
            raise PydanticCustomError(
                "coaching_trigger",
                "{name} is measured, not matched: it takes no phrases",
                {"name": self.name},
            )
        if self.next_steps and self.name != NEXT_STEP_TRIGGER:
            raise PydanticCustomError(
                "coaching_trigger", "next_steps is only for {deferred}", {"deferred": NEXT_STEP_TRIGGER}
            )
        if not self.enabled:
            return self
        if not metric and self.name != COMPETITOR_TRIGGER and not self.phrases:
            raise PydanticCustomError(
                "coaching_trigger", "trigger {name} needs at least one phrase", {"name": self.name}
            )
        if not self.hint.strip():
            raise PydanticCustomError(
                "coaching_trigger",
                "trigger {name} needs a hint (used when the model is off or slow)",
                {"name": self.name},
            )
        return self


class CoachingSettings(BaseModel):
    """The AI coach of a call with a human rep. Off unless asked for."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = False
    triggers: list[TriggerSettings] = Field(
        default_factory=list,
        max_length=50,
        description="the team's triggers; the built-ins apply too, and one with a built-in's name replaces "
        "it (set enabled: false to turn a built-in off)",
    )
    competitors: list[Phrase] = Field(
        default_factory=list, max_length=50, description="competitor names for competitor_mention"
    )
    use_llm: bool = Field(True, description="word hints with the agent's language model and playbook")
    hint_timeout_s: float = Field(
        3.0,
        ge=0.2,
        le=10,
        description="how long the model may take to rewrite a hint card (the rule's words show at once)",
    )
    whisper_hints: bool = Field(False, description="also whisper hints to the rep (audio); cards always")
    monologue_s: float = Field(60.0, ge=5, le=600, description="one speaker this long without a break")
    dead_air_s: float = Field(5.0, ge=1, le=120, description="nobody speaking this long")
    negative_sentiment: float = Field(
        -0.5, ge=-1, le=0, description="a customer utterance this negative (VADER compound, -1..1)"
    )

    @model_validator(mode="after")
    def _unique_names(self) -> CoachingSettings:
        seen: set[str] = set()
        for trigger in self.triggers:
            if trigger.name in seen:
                raise PydanticCustomError(
                    "coaching_trigger", "two triggers are named {name}", {"name": trigger.name}
                )
            seen.add(trigger.name)
        return self
