"""Live metrics of a conversation, built from finished utterances (one leg each, with its speaker's role).

Talk time, talk ratio and speaking rate per role; the longest monologue; dead air; interruptions; and
sentiment (VADER's compound score, −1..1) per role. The coach's own whispers are not part of the
conversation: they count in talk time under ``coach`` and nowhere else.

Definitions (so the numbers on the rep's page can be checked by hand):

- a *monologue* is one role's speech with gaps shorter than ``PAUSE_S``; a backchannel from the other
  side ("uh-huh", "right") does not break it;
- *dead air* is a gap of at least ``PAUSE_S`` with nobody speaking; ``silent_for`` is the silence so far;
- an *interruption* is an utterance that starts more than ``OVERLAP_S`` before another role's utterance
  ends (backchannels are not interruptions); it counts for the role that cut in.

``update`` and ``tick`` return the ``Crossing``s of the coach's limits (a long monologue, dead air, a
negative utterance); the coach turns them into triggers.
"""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer  # type: ignore[import-untyped]

from parley.engine.coaching import CoachingSettings

PAUSE_S = 1.5
"""A shorter gap is a pause within someone's speech; a longer one is silence."""
OVERLAP_S = 0.2
"""Overlap at a turn's edge this short is ordinary turn-taking (and transcript timing), not cutting in."""
BACKCHANNELS = frozenset(
    {"uh", "huh", "mm", "hmm", "mhm", "mmhmm", "yeah", "yep", "yes", "ok", "okay", "right", "sure"}
    | {"got", "it", "i", "see", "oh", "ah", "um", "exactly", "true", "totally", "absolutely"}
)
BACKCHANNEL_WORDS = 3
RECENT = 16
"""Utterances kept to find overlaps (finals of different legs can arrive out of order)."""

_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


@functools.cache
def _vader() -> Any:
    """Loaded once per process (reads its lexicon file, some tens of milliseconds)."""
    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER's compound score: −1 (very negative) … 1 (very positive); 0 for no words."""
    if not _WORD.search(text):
        return 0.0
    return float(_vader().polarity_scores(text)["compound"])


def is_backchannel(text: str) -> bool:
    """A short listener's noise ("uh-huh", "yeah, right") rather than a turn of its own."""
    words = _WORD.findall(text.lower())
    return 0 < len(words) <= BACKCHANNEL_WORDS and all(w in BACKCHANNELS for w in words)


@dataclass(frozen=True, slots=True)
class Crossing:
    """A metric crossed the coach's limit: ``trigger`` is the metric trigger's name."""

    trigger: str
    role: str
    value: float
    participant_id: str = ""
    text: str = ""


@dataclass(slots=True)
class _RoleStats:
    talk_s: float = 0.0
    words: int = 0
    utterances: int = 0
    interruptions: int = 0
    sentiment_sum: float = 0.0
    sentiment_n: int = 0
    sentiment_last: float | None = None


@dataclass(slots=True)
class _Spoken:
    role: str
    start: float
    end: float
    backchannel: bool
    interrupted: bool = False
    """Already counted as cutting in."""


@dataclass(slots=True)
class _Monologue:
    role: str
    start: float
    end: float
    reported: bool = False

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(slots=True)
class _Longest:
    role: str | None = None
    seconds: float = 0.0


@dataclass(slots=True)
class _DeadAir:
    total_s: float = 0.0
    longest_s: float = 0.0
    reported: bool = False
    """The current silence has been reported (reset when someone speaks)."""


@dataclass(slots=True)
class ConversationMetrics:
    """Per-call metrics; feed it every final utterance (any order is tolerated) and tick it each second."""

    monologue_s: float = 60.0
    dead_air_s: float = 5.0
    negative_sentiment: float = -0.5
    score: Callable[[str], float] = sentiment
    _roles: dict[str, _RoleStats] = field(default_factory=dict)
    _recent: deque[_Spoken] = field(default_factory=lambda: deque(maxlen=RECENT))
    _monologue: _Monologue | None = None
    _longest: _Longest = field(default_factory=_Longest)
    _dead: _DeadAir = field(default_factory=_DeadAir)
    _first_start: float | None = None
    _last_end: float | None = None
    _last_role: str = ""
    _last_participant: str = ""
    _speaking: set[str] = field(default_factory=set)
    _activity: float | None = None
    _now: float | None = None

    @classmethod
    def from_settings(
        cls, settings: CoachingSettings, score: Callable[[str], float] = sentiment
    ) -> ConversationMetrics:
        return cls(settings.monologue_s, settings.dead_air_s, settings.negative_sentiment, score)

    def update(self, participant_id: str, role: str, text: str, start: float, end: float) -> list[Crossing]:
        """Take one finished utterance into account; returns the limits it crossed."""
        end = max(end, start)
        self._now = max(self._now or end, end)
        stats = self._roles.setdefault(role, _RoleStats())
        stats.talk_s += end - start
        stats.words += len(_WORD.findall(text))
        stats.utterances += 1
        if role == "coach":
            return []
        crossings: list[Crossing] = []
        backchannel = is_backchannel(text)
        self._gap_before(start, end, role, participant_id)
        self._interruptions(_Spoken(role, start, end, backchannel), stats)
        monologue = self._monologue_after(role, start, end, backchannel)
        if monologue is not None and monologue.seconds >= self.monologue_s and not monologue.reported:
            monologue.reported = True
            crossings.append(Crossing("long_monologue", role, monologue.seconds, participant_id, text))
        if _WORD.search(text):
            score = self.score(text)
            stats.sentiment_sum += score
            stats.sentiment_n += 1
            stats.sentiment_last = score
            if score <= self.negative_sentiment:
                crossings.append(Crossing("negative_sentiment", role, score, participant_id, text))
        return crossings

    def speaking(self, role: str, active: bool, at: float) -> None:
        """Someone started or stopped speaking (before their utterance is final): not dead air."""
        if role == "coach":
            return
        if active:
            self._speaking.add(role)
            self._dead.reported = False
        else:
            self._speaking.discard(role)
        self._activity = max(self._activity or at, at)

    def silent_for(self, now: float) -> float:
        """How long nobody has been speaking, as of ``now`` (0 before anyone spoke, or while one does)."""
        if self._last_end is None or self._speaking:
            return 0.0
        return max(0.0, now - max(self._last_end, self._activity or self._last_end))

    def tick(self, now: float) -> list[Crossing]:
        """Time-based limits: dead air, reported once per silence."""
        self._now = now
        silent = self.silent_for(now)
        if silent >= self.dead_air_s and not self._dead.reported:
            self._dead.reported = True
            return [Crossing("dead_air", self._last_role, silent, self._last_participant)]
        return []

    def _gap_before(self, start: float, end: float, role: str, participant_id: str) -> None:
        if self._last_end is not None and start > self._last_end:
            gap = start - self._last_end
            self._dead.longest_s = max(self._dead.longest_s, gap)
            if gap >= PAUSE_S:
                self._dead.total_s += gap
        self._first_start = start if self._first_start is None else min(self._first_start, start)
        if self._last_end is None or end >= self._last_end:
            self._last_end = end
            self._last_role, self._last_participant = role, participant_id
        self._dead.reported = False

    def _interruptions(self, me: _Spoken, stats: _RoleStats) -> None:
        for other in self._recent:
            if other.role == me.role or other.backchannel or me.backchannel:
                continue
            if not me.interrupted and other.start < me.start < other.end - OVERLAP_S:
                me.interrupted = True
                stats.interruptions += 1
            elif not other.interrupted and me.start < other.start < me.end - OVERLAP_S:
                other.interrupted = True  # it arrived first, but cut into this one
                self._roles[other.role].interruptions += 1
        self._recent.append(me)

    def _monologue_after(self, role: str, start: float, end: float, backchannel: bool) -> _Monologue | None:
        current = self._monologue
        if current is not None and role == current.role and start - current.end < PAUSE_S:
            current.end = max(current.end, end)
        elif current is not None and role != current.role and backchannel:
            return None  # "uh-huh" does not end the other's monologue
        else:
            current = self._monologue = _Monologue(role, start, end)
        if current.seconds > self._longest.seconds:
            self._longest = _Longest(current.role, current.seconds)
        return current

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        """The metrics as JSON for the API and the rep's page (seconds and scores rounded)."""
        at = now if now is not None else self._now
        conversation = sum(s.talk_s for r, s in self._roles.items() if r != "coach")
        roles: dict[str, Any] = {}
        for role, stats in sorted(self._roles.items()):
            mean = stats.sentiment_sum / stats.sentiment_n if stats.sentiment_n else None
            roles[role] = {
                "talk_s": round(stats.talk_s, 2),
                "talk_ratio": (
                    round(stats.talk_s / conversation, 3) if role != "coach" and conversation > 0 else None
                ),
                "words": stats.words,
                "words_per_minute": round(stats.words * 60 / stats.talk_s, 1) if stats.talk_s > 0 else None,
                "utterances": stats.utterances,
                "interruptions": stats.interruptions,
                "sentiment": {
                    "mean": None if mean is None else round(mean, 3),
                    "last": None if stats.sentiment_last is None else round(stats.sentiment_last, 3),
                },
            }
        duration = (
            self._last_end - self._first_start
            if self._last_end is not None and self._first_start is not None
            else 0.0
        )
        return {
            "duration_s": round(duration, 2),
            "roles": roles,
            "longest_monologue": {"role": self._longest.role, "seconds": round(self._longest.seconds, 2)},
            "dead_air": {
                "total_s": round(self._dead.total_s, 2),
                "longest_s": round(self._dead.longest_s, 2),
                "silent_for_s": round(self.silent_for(at), 2) if at is not None else 0.0,
            },
        }
