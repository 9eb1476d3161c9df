"""The coach's fast rules: phrases said by the customer or the rep that call for a hint.

Matching works on words, not on regular expressions. An utterance is lower-cased, its apostrophes
unified and its contractions spelled out ("can't" → "can not", "it's" → "it is", "let's" → "let us"), then
cut into words and clauses (at . , ; : ! ? and dashes). A phrase goes through the same steps, so "can't
afford" and "cannot afford" are one phrase. A phrase's word also matches its plural ("price" matches
"prices"); ``*`` between two words stands for up to three words, but never for a negation ("price * high"
matches "the price is a bit high", not "the price is not high"). Tenant text is never compiled into a
pattern, so a phrase such as ``(a+)+$`` is just the words "a" — matched in linear time like any other.

Negation: for triggers with ``negation`` on (by default price_objection, competitor_mention,
cancellation_intent and next_step_missing), a match is cancelled when one of ``NEGATORS`` stands in the
``NEGATION_WINDOW`` words before it within the same clause ("I don't want to cancel", "it's not that
expensive"), and so is any match inside a cancelled one. A "no" that opens its clause is an answer, not a
negation ("No, it's too expensive" fires). ``unless`` phrases cancel every match of their trigger in the
same utterance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from parley.engine.coaching import (
    COMPETITOR_TRIGGER,
    METRIC_TRIGGERS,
    NEXT_STEP_TRIGGER,
    WILDCARD,
    WILDCARD_WORDS,
    CoachingSettings,
    TriggerSettings,
)

NEGATORS = frozenset({"not", "no", "never", "without", "neither", "nor", "hardly"})
NEGATION_WINDOW = 4
"""Words looked at before a match for a negator (same clause only)."""
NEGATED_BY_DEFAULT = frozenset(
    {"price_objection", "competitor_mention", "cancellation_intent", NEXT_STEP_TRIGGER}
)
NEXT_STEP_REP_TURNS = 2
"""A commitment not followed by a next step within this many rep utterances…"""
NEXT_STEP_WINDOW_S = 30.0
"""…or this many seconds fires next_step_missing."""

_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "`": "'", "ʼ": "'", "´": "'"})
_CLAUSES = re.compile(r"[.,;:!?()\[\]\"“”…]+|\s[-–—]+\s|[–—]")
_WORDS = re.compile(r"\*|[^\W_]+(?:'[^\W_]+)*")
"""Words (letters and digits, with inner apostrophes), and ``*`` for a phrase's wildcard."""
_WHOLE: dict[str, tuple[str, ...]] = {
    "can't": ("can", "not"),
    "cannot": ("can", "not"),
    "won't": ("will", "not"),
    "shan't": ("shall", "not"),
    "ain't": ("is", "not"),
    "let's": ("let", "us"),
    # Transcripts sometimes drop the apostrophe; these spellings are not also other common words.
    "cant": ("can", "not"),
    "dont": ("do", "not"),
    "doesnt": ("does", "not"),
    "didnt": ("did", "not"),
    "isnt": ("is", "not"),
    "wasnt": ("was", "not"),
    "arent": ("are", "not"),
    "werent": ("were", "not"),
    "couldnt": ("could", "not"),
    "wouldnt": ("would", "not"),
    "shouldnt": ("should", "not"),
    "havent": ("have", "not"),
    "hasnt": ("has", "not"),
    "im": ("i", "am"),
    "ive": ("i", "have"),
    "youre": ("you", "are"),
    "theyre": ("they", "are"),
    "thats": ("that", "is"),
    "whats": ("what", "is"),
}
_SUFFIXES = (
    ("n't", "not"),
    ("'re", "are"),
    ("'m", "am"),
    ("'ll", "will"),
    ("'ve", "have"),
    ("'d", "would"),
    ("'s", "is"),
)


@dataclass(frozen=True, slots=True)
class Word:
    text: str
    clause: int
    first: bool
    """The first word of its clause."""


def words_of(text: str) -> list[Word]:
    """The normalized words of an utterance or a phrase (``*`` is kept as a word of its own)."""
    out: list[Word] = []
    cleaned = text.lower().translate(_APOSTROPHES)
    for clause, part in enumerate(_CLAUSES.split(cleaned)):
        first = True
        for raw in _WORDS.findall(part):
            for piece in _expand(raw):
                out.append(Word(piece, clause, first))
                first = False
    return out


def _expand(word: str) -> tuple[str, ...]:
    if word in _WHOLE:
        return _WHOLE[word]
    for suffix, full in _SUFFIXES:
        if word.endswith(suffix) and len(word) > len(suffix):
            return (word[: -len(suffix)], full)
    return (word,)


def _same_word(phrase_word: str, said: str, exact: bool = False) -> bool:
    """Equal, or (unless ``exact``) the said word is the phrase word's plural (-s, -es) for words of three
    letters or more."""
    if said == phrase_word:
        return True
    return not exact and len(phrase_word) >= 3 and said in (phrase_word + "s", phrase_word + "es")


def _is_negator(word: Word) -> bool:
    return word.text in NEGATORS and not (word.text == "no" and word.first)


@dataclass(frozen=True, slots=True)
class _Phrase:
    text: str
    """As configured (reported in matches)."""
    words: tuple[str | None, ...]
    """Normalized words; None for ``*``."""
    exact: bool = False
    """A name: no plural of it counts ("hub spots" is not HubSpot)."""

    def end_of_match(self, said: Sequence[Word], start: int) -> int | None:
        """Where a match starting at ``start`` ends (exclusive), or None. At most 4**3 paths (``*`` ≤ 3)."""
        return self._from(said, 0, start)

    def _from(self, said: Sequence[Word], j: int, i: int) -> int | None:
        if j == len(self.words):
            return i
        word = self.words[j]
        if word is None:
            for skip in range(WILDCARD_WORDS + 1):
                if skip and (i + skip > len(said) or _is_negator(said[i + skip - 1])):
                    break
                end = self._from(said, j + 1, i + skip)
                if end is not None:
                    return end
            return None
        if i < len(said) and _same_word(word, said[i].text, self.exact):
            return self._from(said, j + 1, i + 1)
        return None


class PhraseSet:
    """Phrases compiled to word sequences and looked up by their first word."""

    def __init__(self, phrases: Iterable[str], *, names: Iterable[str] = ()) -> None:
        self._by_first: dict[str, list[_Phrase]] = {}
        self.size = 0
        seen: set[tuple[str | None, ...]] = set()
        for text, exact in [(p, False) for p in phrases] + [(n, True) for n in names]:
            normalized = tuple(None if w.text == WILDCARD else w.text for w in words_of(text))
            if not normalized or normalized[0] is None or normalized in seen:
                continue
            seen.add(normalized)
            first = normalized[0]
            self._by_first.setdefault(first, []).append(_Phrase(text, normalized, exact))
            self.size += 1

    def __bool__(self) -> bool:
        return self.size > 0

    def _candidates(self, said: str) -> list[_Phrase]:
        found = list(self._by_first.get(said, ()))
        for stem in (said[:-1] if said.endswith("s") else None, said[:-2] if said.endswith("es") else None):
            if stem and len(stem) >= 3:
                found.extend(self._by_first.get(stem, ()))
        return found

    def find(self, said: Sequence[Word], *, negation: bool = False) -> str | None:
        """The first phrase (by position in the utterance) that matches and is not negated.

        A match inside a negated one is negated too: in "not too expensive" the phrase "expensive"
        is as negated as "too expensive"."""
        negated_until = -1
        for start, word in enumerate(said):
            for phrase in self._candidates(word.text):
                end = phrase.end_of_match(said, start)
                if end is None:
                    continue
                if negation and (start < negated_until or _negated(said, start)):
                    negated_until = max(negated_until, end)
                    continue
                return phrase.text
        return None


def _negated(said: Sequence[Word], start: int) -> bool:
    clause = said[start].clause
    before = said[max(0, start - NEGATION_WINDOW) : start]
    return any(w.clause == clause and _is_negator(w) for w in before)


@dataclass(frozen=True, slots=True)
class Match:
    trigger: str
    phrase: str
    """The configured phrase that matched."""


def _t(
    name: str,
    speaker: str,
    hint: str,
    phrases: Sequence[str] = (),
    unless: Sequence[str] = (),
    **extra: object,
) -> TriggerSettings:
    return TriggerSettings.model_validate(
        {"name": name, "speaker": speaker, "hint": hint, "phrases": list(phrases), "unless": list(unless)}
        | extra
    )


PRICE_OBJECTION = _t(
    "price_objection",
    "customer",
    "Acknowledge the price concern, then tie the cost to the value they said matters most.",
    [
        "too * expensive",
        "expensive",
        "pricey",
        "costly",
        "overpriced",
        "rip off",
        "ripoff",
        "highway robbery",
        "cost * too much",
        "charge * too much",
        "charging * too much",
        "pay * too much",
        "paying * too much",
        "too much money",
        "too much for",
        "that is too much",
        "it is too much",
        "way too much",
        "bit too much",
        "bit much",
        "lot of money",
        "too high",
        "price * high",
        "cost * high",
        "fee * high",
        "quote * high",
        "high price",
        "too steep",
        "bit steep",
        "is * steep",
        "seem * steep",
        "sound * steep",
        "price * steep",
        "steep price",
        "wiggle room",
        "flexibility on * price",
        "flexible on * price",
        "negotiate",
        "negotiable",
        "better on * price",
        "do any better",
        "not sure * budget",
        "not * afford",
        "unaffordable",
        "out of * budget",
        "over * budget",
        "above * budget",
        "outside * budget",
        "not in * budget",
        "not have * budget",
        "no budget",
        "budget * tight",
        "tight budget",
        "limited budget",
        "budget constraint",
        "budget * not allow",
        "not * budget for",
        "cheaper",
        "more affordable",
        "lower price",
        "better price",
        "best price",
        "better deal",
        "discount",
        "lower the price",
        "reduce the price",
        "bring * price down",
        "come down on * price",
        "knock * off",
        "not * worth",
        "waste of money",
        "more than we * pay",
        "more than we * spend",
        "more than * budgeted",
        "pay * less",
        "paying * less",
        "for less",
        "out of * range",
        "that is a lot",
        "it is a lot",
        "best you can do",
        "justify * cost",
        "justify * price",
        "hard to justify",
        "double what",
        "twice what",
        "spend less",
        "price * problem",
        "price * issue",
        "price * concern",
        "cost * concern",
        "concerned about * price",
        "concerned about * cost",
        "worried about * price",
        "worried about * cost",
        "sticker shock",
        "break the bank",
        "arm and a leg",
        "twice as much",
        "half the price",
    ],
    [
        "how expensive",
        "worth every penny",
        "learning curve",
        "no problem with * price",
        "price * fine",
        "price * ok",
        "price * okay",
        "price * reasonable",
        "price * fair",
        "fair price",
        "good price",
        "great price",
        "good deal",
        "great deal",
        "budget * approved",
        "plenty of budget",
    ],
)
PRICING_QUESTION = _t(
    "pricing_question",
    "customer",
    "Give a clear price range, then ask about their needs so you can recommend the right plan.",
    [
        "how much * cost",
        "how much is",
        "how much are",
        "how much does",
        "how much do",
        "how much would",
        "how much will",
        "how much for",
        "how much money",
        "how much * pay",
        "how much * charge",
        "what does * cost",
        "what would * cost",
        "what will * cost",
        "what is * cost",
        "what are * cost",
        "what is * price",
        "what are * price",
        "pricing",
        "price list",
        "price range",
        "price wise",
        "cost wise",
        "price point",
        "price tag",
        "prices start",
        "starting price",
        "what do you charge",
        "what * you charge",
        "how * you charge",
        "what * you charging",
        "how much * charging",
        "how * priced",
        "cost per",
        "price per",
        "per seat",
        "per user",
        "per license",
        "per agent",
        "setup fee",
        "monthly fee",
        "annual fee",
        "any fees",
        "what fees",
        "hidden fees",
        "what are * rates",
        "your rates",
        "how expensive",
        "a quote",
        "ballpark",
        "ball park",
        "rough idea of * cost",
        "what is the investment",
        "what kind of investment",
        "cheapest plan",
        "cheapest option",
        "free plan",
        "free tier",
        "how * billed",
        "billing work",
        "is there * cost",
        "is there * fee",
        "does * cost",
        "extra cost",
        "additional cost",
        "would * run me",
        "would * run us",
        "will * run me",
        "will * run us",
        "what * set me back",
        "what * set us back",
    ],
    [
        "too high",
        "too much",
        "too * expensive",
        "not * afford",
        "pricing * fair",
        "pricing * fine",
        "pricing * reasonable",
        "pricing * good",
        "pricing * great",
        "pricing * clear",
        "pricing * ok",
        "pricing * okay",
    ],
)
COMPETITOR_MENTION = _t(
    "competitor_mention",
    "customer",
    "Ask what they like about the other option, then show what sets us apart on that point.",
    [
        "competitor",
        "competition",
        "another vendor",
        "other vendor",
        "different vendor",
        "another provider",
        "other provider",
        "different provider",
        "another company",
        "other companies",
        "another solution",
        "other solutions",
        "another tool",
        "other tools",
        "other options",
        "shopping around",
        "comparing",
        "quote from",
        "offer from",
        "currently using",
        "currently use",
        "go with someone else",
        "going with someone else",
        "elsewhere",
    ],
)
CANCELLATION_INTENT = _t(
    "cancellation_intent",
    "customer",
    "Stay calm, ask what is behind it, and offer to fix the cause before talking terms.",
    [
        "cancel",
        "cancelling",
        "canceling",
        "cancelled",
        "canceled",
        "cancellation",
        "terminate",
        "terminating",
        "termination",
        "end * contract",
        "end * subscription",
        "end * service",
        "stop * subscription",
        "stop * service",
        "stop using",
        "stop paying",
        "unsubscribe",
        "close * account",
        "shut down * account",
        "delete * account",
        "deactivate",
        "switch provider",
        "switch * provider",
        "switching * provider",
        "switch * vendor",
        "switching * vendor",
        "move to another",
        "moving to another",
        "go with another",
        "going with another",
        "thinking about leaving",
        "thinking of leaving",
        "want to leave",
        "going to leave",
        "planning to leave",
        "not * renew",
        "not * renewing",
        "opt out",
        "out of * contract",
        "want out",
        "done with you",
        "done with * service",
        "fed up",
        "take * business elsewhere",
        "business elsewhere",
        "go elsewhere",
        "go with a different",
        "going with a different",
        "want a refund",
        "get a refund",
        "full refund",
        "money back",
        "discontinue",
        "might * leave",
        "just leave",
    ],
    [
        "not cancel",
        "never cancel",
        "no need to cancel",
        "cancel * meeting",
        "cancel * appointment",
        "cancel * demo",
        "cancel the call",
        "cancel this call",
        "cancel our call",
        "noise cancelling",
        "noise canceling",
        "noise cancellation",
        "cancel out",
    ],
)
NEXT_STEP_MISSING = _t(
    "next_step_missing",
    "customer",
    "They said yes: propose a concrete next step with a day and time.",
    [
        "sound good",
        "sound great",
        "sound perfect",
        "sound fine",
        "sound like a plan",
        "that works",
        "works for me",
        "works for us",
        "let us do it",
        "let us do this",
        "let us do that",
        "let us go",
        "let us move forward",
        "let us proceed",
        "let us get started",
        "let us try",
        "go ahead",
        "go for it",
        "i am interested",
        "we are interested",
        "i would be interested",
        "we would be interested",
        "very interested",
        "definitely interested",
        "really interested",
        "count me in",
        "count us in",
        "sign me up",
        "sign us up",
        "we will take it",
        "i will take it",
        "we will go with",
        "i will go with",
        "move forward",
        "want to proceed",
        "like to proceed",
        "ready to buy",
        "ready to sign",
        "ready to go",
        "ready to start",
        "ready to move",
        "get started",
        "want to buy",
        "like to buy",
        "want to try",
        "like to try",
        "give it a try",
        "give it a shot",
        "it is a deal",
        "you have a deal",
        "you have got a deal",
        "we have a deal",
        "i am sold",
        "we are sold",
        "you sold me",
        "convinced me",
        "love it",
    ],
    ["sound * but", "not sure", "not yet", "not ready", "think about it", "need to think", "check with"],
)
DEFAULT_NEXT_STEPS = (
    "schedule",
    "scheduling",
    "book",
    "booking",
    "calendar",
    "invite",
    "send you",
    "send * over",
    "send it",
    "send the",
    "email you",
    "email",
    "e mail",
    "follow up",
    "check in",
    "call you",
    "give you a call",
    "call back",
    "touch base",
    "tomorrow",
    "next week",
    "this week",
    "later today",
    "this afternoon",
    "end of day",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "o'clock",
    "what time",
    "when * work",
    "when * good",
    "are you free",
    "available",
    "availability",
    "set * up",
    "demo",
    "meeting",
    "proposal",
    "contract",
    "agreement",
    "paperwork",
    "order form",
    "invoice",
    "docusign",
    "sign",
    "onboarding",
    "kick off",
    "kickoff",
    "get * started",
    "trial",
    "next step",
    "loop in",
    "introduce you",
    "walk you through",
    "link",
    "start date",
    "go live",
    "reach out",
    "get back to you",
    "in touch",
    "connect you",
)
"""What the rep says that counts as a next step, unless the team's next_step_missing lists its own."""
LONG_MONOLOGUE = _t(
    "long_monologue",
    "rep",
    "You've been talking a while: pause and ask them an open question.",
    cooldown_s=120.0,
)
DEAD_AIR = _t("dead_air", "any", "The line has gone quiet: ask a question to re-engage them.")
NEGATIVE_SENTIMENT = _t(
    "negative_sentiment",
    "customer",
    "They sound unhappy: acknowledge how they feel and ask what went wrong.",
)

BUILTIN_TRIGGERS: tuple[TriggerSettings, ...] = (
    PRICE_OBJECTION,
    PRICING_QUESTION,
    COMPETITOR_MENTION,
    CANCELLATION_INTENT,
    NEXT_STEP_MISSING,
    LONG_MONOLOGUE,
    DEAD_AIR,
    NEGATIVE_SENTIMENT,
)
"""The triggers every coached call has unless the team replaces (or disables) one by name."""

DESCRIPTIONS: dict[str, str] = {
    "price_objection": "the customer objects to the price",
    "pricing_question": "the customer asks what it costs",
    "competitor_mention": "the customer mentions a competitor or other options",
    "cancellation_intent": "the customer wants to cancel or leave",
    "next_step_missing": "the customer agreed, but the rep has not proposed a concrete next step",
    "long_monologue": "the rep has been talking for a long time without a break",
    "dead_air": "nobody has spoken for several seconds",
    "negative_sentiment": "the customer sounds unhappy or frustrated",
}
"""What a built-in trigger means, for the hint prompt; a team's trigger is described by its name."""


def describe(name: str) -> str:
    return DESCRIPTIONS.get(name, name.replace("_", " "))


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
