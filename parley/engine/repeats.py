"""A reply that copies an earlier one word for word.

A small model reads its own earlier turns as the best example of an answer: asked "Do you clean air
ducts?" after "We do not service window air conditioning units.", the 0.5B model said that sentence
again, and again to the next request. The copy restates a fact, so the fact check backs it, and the
caller hears an answer to a question they did not ask. A first sentence that repeats one the agent said
to a different question is therefore judged like an unbacked answer (``engine/thinking.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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


def _overlap(a: str, b: str) -> float:
    left, right = set(plain(a).split()), set(plain(b).split())
    return len(left & right) / len(left | right) if left and right else 0.0


@dataclass(frozen=True, slots=True)
class EarlierLines:
    """The statements the agent made earlier in the call to other questions (their plain forms)."""

    lines: frozenset[str]

    @classmethod
    def of(cls, history: Sequence[ChatMessage], asked: str, own_lines: Iterable[str] = ()) -> EarlierLines:
        """From the call's messages, for the caller's message ``asked``. ``own_lines`` (the agent's fixed
        lines: its unknown answer, goodbye …) are said again by design and never count."""
        fixed = {plain(piece) for line in own_lines for piece in _pieces(line)}
        found: set[str] = set()
        question = ""
        for message in history:
            if message.role == "user":
                question = message.content
            elif (
                message.role == "assistant" and message.content and _overlap(question, asked) < SAME_QUESTION
            ):
                for piece in _pieces(message.content):
                    line = plain(piece)
                    if piece.endswith("?") or len(line.split()) < MIN_WORDS or line in fixed:
                        continue
                    found.add(line)
        return cls(frozenset(found))

    def verdict(self, text: str, *, finished: bool = False) -> str | None:
        """For a reply's text so far: None while it may still be copying an earlier line, "" once it is
        not, and its first sentence once that is a copy. ``finished``: the reply ends here."""
        if not self.lines:
            return ""
        end = sentence_end(text)
        first = text[: end.end()] if end else text
        said = plain(first)
        if not said:
            return "" if finished else None
        if end or finished:
            return first.strip() if said in self.lines else ""
        return None if any(line.startswith(said) for line in self.lines) else ""


def without_line(messages: Sequence[ChatMessage], copied: str) -> list[ChatMessage]:
    """``messages`` without the exchanges (a caller's message and the agent's answer to it) whose answer
    said ``copied``; the last message, the one being answered, always stays."""
    line = plain(copied)
    dropped: set[int] = set()
    for i in range(1, len(messages) - 1):
        answer, question = messages[i], messages[i - 1]
        said_it = answer.role == "assistant" and not answer.tool_calls and line in plain(answer.content)
        if said_it and question.role == "user":
            dropped.update((i - 1, i))
    return [m for i, m in enumerate(messages) if i not in dropped]
