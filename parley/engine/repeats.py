"""A reply that copies an earlier one, or the caller's words, word for word.

A small model reads its own earlier turns as the best example of an answer: asked "Do you clean air
ducts?" after "We do not service window air conditioning units.", the 0.5B model said that sentence
again, and again to the next request. The copy restates a fact, so the fact check backs it, and the
caller hears an answer to a question they did not ask. A first sentence that repeats one the agent said
to a different question is therefore judged like an unbacked answer (``engine/thinking.py``). So is a
reply that says the caller's own words back (``echo_verdict``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from parley.engine.chunker import sentence_end
from parley.providers.llm.base import ChatMessage

MIN_WORDS = 5
"""Shorter sentences ("Sure, I can help.", "You are very welcome.") recur in any conversation."""
SAME_QUESTION = 0.6
"""Word overlap (Jaccard) above which the caller asked the same thing again: the same answer is right."""

_WORD = re.compile(r"[a-z0-9']+")
_PIECE_END = re.compile(r"(?<=[.!?:;])\s+")
"""Sentences, and the clauses after a colon or semicolon: the model copies "We do not accept MetLife."
out of "We accept Delta Dental and Cigna; we do not accept MetLife.", and a fact out of the line that
said it after ``UNSURE_LEAD``."""


def _pieces(text: str) -> list[str]:
    parts = [p.strip() for p in _PIECE_END.split(text) if p.strip()]
    return [*parts, text.strip()] if len(parts) > 1 else parts


def plain(text: str) -> str:
    """Lower-case words only: punctuation and spacing do not make a different sentence."""
    return " ".join(_WORD.findall(text.lower()))


_ANSWER_LEAD = re.compile(
    r"^(?:(?:yes|yeah|yep|no|nope|sorry|unfortunately|okay|ok|sure|well|absolutely|certainly)(?:\s+|$))+"
)
"""Words an answer opens with that say nothing of what it claims: "No, Bright Smile does not accept
MetLife." copied as "Bright Smile does not accept MetLife." to another question is the same line."""


def _claim(text: str) -> str:
    """The plain form of ``text`` without its answer's lead ("yes", "no, sorry" …)."""
    return _ANSWER_LEAD.sub("", plain(text))


_PLAIN_WORDS = frozenset(
    """a an the of at on in for to by from with and or is are was were be am do does did can could will
    would we you i it they he she there this that these those our your my its their me us them have has
    had s re ll ve d m""".split()  # noqa: SIM905
)
MIN_CLAIM_WORDS = 2
"""A line restated in other words must name at least this many things ("accept", "MetLife")."""


def _claim_words(text: str) -> frozenset[str]:
    """The words of a line that say what it claims (negations included: "not" keeps a "no" apart)."""
    return frozenset(word for word in _claim(text).split() if word not in _PLAIN_WORDS)


def _overlap(a: str, b: str) -> float:
    left, right = set(plain(a).split()), set(plain(b).split())
    return len(left & right) / len(left | right) if left and right else 0.0


@dataclass(frozen=True, slots=True)
class EarlierLines:
    """The statements the agent made earlier in the call to other questions (their plain forms)."""

    lines: frozenset[str]
    restating: frozenset[str] = frozenset()
    """The claim words of a line the reply was already asked again without (``again``)."""

    @classmethod
    def of(cls, history: Sequence[ChatMessage], asked: str, own_lines: Iterable[str] = ()) -> EarlierLines:
        """From the call's messages, for the caller's message ``asked``. ``own_lines`` (the agent's fixed
        lines: its unknown answer, goodbye …) are said again by design and never count."""
        fixed = {_claim(piece) for line in own_lines for piece in _pieces(line)}
        found: set[str] = set()
        question = ""
        for message in history:
            if message.role == "user":
                question = message.content
            elif (
                message.role == "assistant" and message.content and _overlap(question, asked) < SAME_QUESTION
            ):
                for piece in _pieces(message.content):
                    line = _claim(piece)
                    if piece.endswith("?") or len(line.split()) < MIN_WORDS or line in fixed:
                        continue
                    found.add(line)
        return cls(frozenset(found))

    def again(self, copied: str) -> EarlierLines:
        """For the request asked once more without the exchanges that said ``copied``: a first sentence
        that says the same thing in other words is a copy too. Without the exchange the model may still
        restate its fact ("We do not accept MetLife." came back as "BrightSmile Orthodontics does not
        accept MetLife." to "Do you do teeth whitening?"), and that fact answers another question."""
        words = _claim_words(copied)
        return replace(self, restating=words if len(words) >= MIN_CLAIM_WORDS else frozenset())

    def verdict(self, text: str, *, finished: bool = False) -> str | None:
        """For a reply's text so far: None while it may still be copying an earlier line, "" once it is
        not, and its first sentence once that is a copy. ``finished``: the reply ends here. Asked
        ``again``, the first sentence is held until it ends, to be judged by what it says."""
        if not self.lines and not self.restating:
            return ""
        end = sentence_end(text)
        first = text[: end.end()] if end else text
        said = _claim(first)
        if not said:
            return "" if finished else None
        if end or finished:
            copied = said in self.lines or bool(self.restating and self.restating <= _claim_words(first))
            return first.strip() if copied else ""
        if self.restating:
            return None
        return None if any(line.startswith(said) for line in self.lines) else ""


ECHO_MIN_WORDS = 4
"""Shorter lines are said back by design ("Thank you." — "Thank you!", "Hello." — "Hello!")."""


def echo_verdict(text: str, asked: str, *, finished: bool = False) -> str | None:
    """Whether a reply (its text so far) says the caller's own words back, as a small model does to words
    it cannot make sense of ("Halond is an oil change take." — "Halond is an oil change take."): None
    while it may still, "" once it does not, and the echoed sentence once it has (all of the caller's
    words, its sentence ended). ``finished``: the reply ends here."""
    words = plain(asked)
    if len(words.split()) < ECHO_MIN_WORDS:
        return ""
    end = sentence_end(text)
    first = text[: end.end()] if end else text
    said = plain(first)
    if not words.startswith(said):
        return ""
    if end or finished:
        return first.strip() if said == words else ""
    return None


def without_line(messages: Sequence[ChatMessage], copied: str) -> list[ChatMessage]:
    """``messages`` without the exchanges (a caller's message and the agent's answer to it) whose answer
    said ``copied``; the last message, the one being answered, always stays."""
    line = _claim(copied)
    dropped: set[int] = set()
    for i in range(1, len(messages) - 1):
        answer, question = messages[i], messages[i - 1]
        said_it = answer.role == "assistant" and not answer.tool_calls and line in plain(answer.content)
        if said_it and question.role == "user":
            dropped.update((i - 1, i))
    return [m for i, m in enumerate(messages) if i not in dropped]
