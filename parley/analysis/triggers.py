"""The coach's fast rules: phrases said by the customer or the rep that call for a hint.

Phrases are matched on words (``analysis/phrases.py``); the built-in triggers are in
``analysis/trigger_catalog.py``. Negation is on by default for price_objection, competitor_mention,
cancellation_intent and next_step_missing: a negated phrase does not fire ("I don't want to cancel").
``unless`` phrases cancel every match of their trigger in the same utterance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from parley.analysis.phrases import PhraseSet, Word, words_of
from parley.analysis.trigger_catalog import BUILTIN_TRIGGERS, DEFAULT_NEXT_STEPS
from parley.engine.coaching import (
    COMPETITOR_TRIGGER,
    METRIC_TRIGGERS,
    NEXT_STEP_TRIGGER,
    CoachingSettings,
    TriggerSettings,
)

NEGATED_BY_DEFAULT = frozenset(
    {"price_objection", "competitor_mention", "cancellation_intent", NEXT_STEP_TRIGGER}
)
NEXT_STEP_REP_TURNS = 2
"""A commitment not followed by a next step within this many rep utterances…"""
NEXT_STEP_WINDOW_S = 30.0
"""…or this many seconds fires next_step_missing."""


@dataclass(frozen=True, slots=True)
class Match:
    trigger: str
    phrase: str
    """The configured phrase that matched."""


def effective_triggers(settings: CoachingSettings) -> dict[str, TriggerSettings]:
    """The built-ins, each replaced by the team's trigger of the same name, then the team's own."""
    triggers = {t.name: t for t in BUILTIN_TRIGGERS}
    for trigger in settings.triggers:
        triggers[trigger.name] = trigger
    return triggers


def speaks_for(speaker: str, role: str) -> bool:
    """Whether ``role`` is whom a trigger listens to; the coach never fires a trigger."""
    if role == "coach":
        return False
    return speaker == "any" or speaker == role


def negation_on(trigger: TriggerSettings) -> bool:
    return trigger.negation if trigger.negation is not None else trigger.name in NEGATED_BY_DEFAULT


@dataclass(frozen=True, slots=True)
class _Rule:
    trigger: TriggerSettings
    phrases: PhraseSet
    unless: PhraseSet
    negation: bool

    def find(self, role: str, said: Sequence[Word]) -> str | None:
        if not speaks_for(self.trigger.speaker, role):
            return None
        phrase = self.phrases.find(said, negation=self.negation)
        if phrase is None or (self.unless and self.unless.find(said) is not None):
            return None
        return phrase


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def name_variants(name: str) -> list[str]:
    """A company name as a recogniser may write it: "SunPower" also as "Sun Power", "Sun Power" also as
    "SunPower" (speech has no spaces; transcripts put them where a word seems to end)."""
    words = _CAMEL.sub(" ", name).split()
    variants = [name, " ".join(words), "".join(words)]
    return list(dict.fromkeys(v for v in variants if v))


class TriggerMatcher:
    """Matches one utterance against every enabled phrase trigger of a call (built once per call)."""

    def __init__(self, settings: CoachingSettings) -> None:
        self.triggers = effective_triggers(settings)
        self._rules: list[_Rule] = []
        self._commitment: _Rule | None = None
        self._next_steps = PhraseSet(DEFAULT_NEXT_STEPS)
        for trigger in self.triggers.values():
            if not trigger.enabled or trigger.name in METRIC_TRIGGERS:
                continue
            names = []
            if trigger.name == COMPETITOR_TRIGGER:
                names = [variant for name in settings.competitors for variant in name_variants(name)]
            rule = _Rule(
                trigger,
                PhraseSet(trigger.phrases, names=names),
                PhraseSet(trigger.unless),
                negation_on(trigger),
            )
            if trigger.name == NEXT_STEP_TRIGGER:
                self._commitment = rule
                if trigger.next_steps:
                    self._next_steps = PhraseSet(trigger.next_steps)
            elif rule.phrases:
                self._rules.append(rule)

    def match(self, role: str, text: str) -> list[Match]:
        """The immediate triggers this utterance fires (not the deferred next_step_missing)."""
        said = words_of(text)
        found: list[Match] = []
        for rule in self._rules:
            phrase = rule.find(role, said)
            if phrase is not None:
                found.append(Match(rule.trigger.name, phrase))
        return found

    def commitment(self, role: str, text: str) -> Match | None:
        """A commitment ("sounds good, let's do it") that should be answered with a next step."""
        if self._commitment is None or role == "rep":
            return None
        phrase = self._commitment.find(role, words_of(text))
        return None if phrase is None else Match(NEXT_STEP_TRIGGER, phrase)

    def proposes_next_step(self, text: str) -> bool:
        return self._next_steps.find(words_of(text)) is not None


@dataclass(frozen=True, slots=True)
class Deferred:
    """A next_step_missing that became due, with the commitment it answers."""

    match: Match
    participant_id: str
    role: str
    text: str


@dataclass(slots=True)
class _Pending:
    deferred: Deferred
    since: float
    rep_turns: int = 0


class NextStepWatch:
    """Watches for a customer's commitment that the rep leaves without a next step.

    After a commitment, each rep utterance either proposes a next step (the watch ends) or does not;
    ``NEXT_STEP_REP_TURNS`` rep utterances without one, or ``NEXT_STEP_WINDOW_S`` seconds, fire the
    trigger. A commitment that answers the rep's own proposal just before ("shall I send the contract
    tomorrow?" — "sounds good") needs nothing more.
    """

    def __init__(self, matcher: TriggerMatcher) -> None:
        self._matcher = matcher
        self._pending: _Pending | None = None
        self._last_rep: tuple[float, bool] | None = None
        """(end, proposed a next step) of the rep's latest utterance."""

    def on_utterance(
        self, participant_id: str, role: str, text: str, start: float, end: float
    ) -> list[Deferred]:
        due = self.due(start)
        if role == "rep":
            proposes = self._matcher.proposes_next_step(text)
            self._last_rep = (end, proposes)
            if self._pending is not None:
                if proposes:
                    self._pending = None
                else:
                    self._pending.rep_turns += 1
                    if self._pending.rep_turns >= NEXT_STEP_REP_TURNS:
                        due.append(self._pending.deferred)
                        self._pending = None
            return due
        if self._pending is not None:
            return due
        match = self._matcher.commitment(role, text)
        if match is None:
            return due
        if self._last_rep is not None:
            rep_end, proposed = self._last_rep
            if proposed and start - rep_end <= NEXT_STEP_WINDOW_S:
                return due
        self._pending = _Pending(Deferred(match, participant_id, role, text), since=end)
        return due

    def due(self, now: float) -> list[Deferred]:
        """The commitment left without a next step for ``NEXT_STEP_WINDOW_S`` by ``now``, if any."""
        if self._pending is not None and now - self._pending.since >= NEXT_STEP_WINDOW_S:
            deferred = self._pending.deferred
            self._pending = None
            return [deferred]
        return []

    @property
    def waiting(self) -> bool:
        return self._pending is not None
