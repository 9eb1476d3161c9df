"""A cheap guess, from the interim transcript, of whether the user has finished their sentence.

Whisper punctuates finished sentences, so a closing '.', '?' or '!' hints the turn is complete, while a
trailing comma, an ellipsis or a last word that rarely ends an English sentence ("and", "the", "to", "um")
says the speaker is mid-phrase. It runs in microseconds, so the engine can consult it on every interim
result and weigh it with the audio model and the length of the silence.

Whisper also puts a '.' or '?' on audio that was cut off mid-phrase ("What's the weather like in?"), so
a telling last word outweighs the closing mark: the cost of that choice is a slightly later answer to the
rare finished turn that ends in one ("Who are you talking to?"), never a cut-in.
"""

from __future__ import annotations

import re

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

DETERMINERS: frozenset[str] = frozenset({"my", "your", "our", "their", "every"})
"""Possessives and the like: a noun must follow."""

CONJUNCTIONS: frozenset[str] = frozenset(
    {"and", "or", "but", "nor", "because", "unless", "although", "whereas", "if", "whether", "than", "plus"}
)

SOFT_CONNECTIVES: frozenset[str] = frozenset(
    {"so", "then", "though", "while", "since", "as", "also", "when", "where", "which", "who", "whose", "that"}
)
"""Usually lead on, yet often close a sentence too ("I think so.", "Is that it? Who said that?")."""

PREPOSITIONS: frozenset[str] = frozenset(
    {
        "to", "of", "in", "into", "on", "onto", "at", "for", "from", "with", "without", "about", "by",
        "near", "between", "through", "during", "under", "via", "towards", "toward", "against", "among",
        "across", "around",
    }
)  # fmt: skip
"""Those that are seldom an adverb at the end of a sentence ("over", "after", "like" are left out)."""

AUXILIARIES: frozenset[str] = frozenset(
    {
        "is", "are", "was", "were", "am", "be", "been", "will", "would", "can", "could", "should", "shall",
        "must", "might", "may", "do", "does", "did", "have", "has", "had",
    }
)  # fmt: skip
"""Lead into a verb or complement, but end many short answers ("Yes, I can.")."""

FILLERS: frozenset[str] = frozenset({"um", "uh", "umm", "uhh", "er", "erm", "hmm", "mm", "ah", "eh"})
"""Hesitation sounds: the speaker is holding the floor. ("mm-hmm" is one word, a backchannel.)"""

CONTINUATION_MARKS: str = ",;:-–—"
"""Trailing punctuation that promises more (a '-' is also how whisper writes a word cut off)."""

ELLIPSES: tuple[str, ...] = ("...", "…")

# Score by the kind of last word and the mark that closes the transcript: (none, '.', '!', '?').
_BY_LAST_WORD: tuple[tuple[frozenset[str], tuple[float, float, float, float]], ...] = (
    (ARTICLES, (0.05, 0.15, 0.2, 0.2)),
    (DETERMINERS, (0.1, 0.25, 0.3, 0.3)),
    (CONJUNCTIONS, (0.1, 0.25, 0.3, 0.35)),
    (FILLERS, (0.1, 0.25, 0.3, 0.35)),
    (PREPOSITIONS, (0.15, 0.3, 0.35, 0.4)),
    (AUXILIARIES, (0.25, 0.55, 0.6, 0.6)),
    (SOFT_CONNECTIVES, (0.3, 0.6, 0.65, 0.65)),
)
# Any other last word. Whisper-style ASR punctuates what it hears as finished, so a bare ending leans
# slightly towards "still talking"; 0.5 would mean no evidence at all.
_DEFAULT_SCORES = (0.4, 0.8, 0.85, 0.9)
_MARK_INDEX = {".": 1, "!": 2, "?": 3}
_CONTINUATION_SCORE = 0.15
_ELLIPSIS_SCORE = 0.1

_TRAILING_CLOSERS = "\"')]}»”’ \t\n"
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


def _last_word(text: str) -> str | None:
    words = _WORD.findall(text.lower())
    return words[-1] if words else None


def text_completeness(text: str) -> float:
    """How likely ``text`` (an interim or final transcript) is a finished turn, in [0, 1].

    Above 0.5 the ending looks final, below it the speaker looks mid-phrase. An empty transcript scores
    0: there is nothing to answer yet.
    """
    stripped = text.strip().rstrip(_TRAILING_CLOSERS)
    last = _last_word(stripped)
    if last is None:
        return 0.0
    if stripped.endswith(ELLIPSES):
        return _ELLIPSIS_SCORE
    if stripped[-1] in CONTINUATION_MARKS:
        return _CONTINUATION_SCORE
    mark = _MARK_INDEX.get(stripped[-1], 0)
    for words, scores in _BY_LAST_WORD:
        if last in words:
            return scores[mark]
    return _DEFAULT_SCORES[mark]


_PLAIN_WORD = re.compile(r"[a-z0-9']+")


def real_words(text: str, backchannels: list[str]) -> list[str]:
    """The words of ``text`` beyond backchannels ("uh-huh", "okay") and the stray single letters an
    interim guess can produce: what it takes for talking over the agent to count as an interruption."""
    cleaned = " " + " ".join(_PLAIN_WORD.findall(text.lower())) + " "
    for phrase in sorted(backchannels, key=len, reverse=True):
        cleaned = cleaned.replace(f" {phrase} ", " ")
    return [w for w in cleaned.split() if len(w) > 1 or w in ("i", "a")]
