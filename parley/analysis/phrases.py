"""Phrases matched on words: how the coach's rules read what was said.

Matching works on words, not on regular expressions. An utterance is lower-cased, its apostrophes
unified and its contractions spelled out ("can't" → "can not", "it's" → "it is", "let's" → "let us"), then
cut into words and clauses (at . , ; : ! ? and dashes). A phrase goes through the same steps, so "can't
afford" and "cannot afford" are one phrase. A phrase's word also matches its plural ("price" matches
"prices"); ``*`` between two words stands for up to three words, but never for a negation ("price * high"
matches "the price is a bit high", not "the price is not high"). Tenant text is never compiled into a
pattern, so a phrase such as ``(a+)+$`` is just the words "a" — matched in linear time like any other.

With negation asked for, a match is cancelled when one of ``NEGATORS`` stands in the
``NEGATION_WINDOW`` words before it within the same clause ("I don't want to cancel", "it's not that
expensive"), and so is any match inside a cancelled one. A "no" that opens its clause is an answer, not a
negation ("No, it's too expensive" matches).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from parley.engine.coaching import WILDCARD, WILDCARD_WORDS

NEGATORS = frozenset({"not", "no", "never", "without", "neither", "nor", "hardly"})
NEGATION_WINDOW = 4
"""Words looked at before a match for a negator (same clause only)."""
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
