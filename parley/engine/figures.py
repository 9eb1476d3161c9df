"""The figures a sentence states (prices, times, counts), for telling a figure the agent was given from
one the model made up.

A small model fills an answer with plausible numbers: asked "How late are you open tonight?" with the
fact "open every day from 7 am to 8 pm", it said "open from 7 am to 2 pm", a sentence close enough to the
fact for an embedding to call it backed. A figure is a fact of its own, so one that nothing the agent was
told holds (its facts, documents, instructions, what the caller said, what a tool returned) is not backed.

Figures are compared as numbers: "$1,200", "1200 dollars" and "twelve hundred" are not told apart as
text, but "8", "8:00" and "eight" are all 8, and "3rd" is 3. Number words count where the agent was told
a figure ("three licensed plumbers"); in an answer only digits are checked, since a small model writes
its figures in digits and "one moment" is no figure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_UNITS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen",
)  # fmt: skip
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80,
         "ninety": 90}  # fmt: skip
_WORD_VALUES: dict[str, int] = (
    {word: n for n, word in enumerate(_UNITS)} | _TENS | {"noon": 12, "midnight": 12}
)

_DIGITS = re.compile(r"(?<![\w.,:])(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:[.:]\d+)?")
_WORDS = re.compile(r"[a-z]+(?:-[a-z]+)?")


def number_word(word: str) -> str | None:
    """A lone number word as its digits ("three" → "3", "twenty" → "20", "noon" → "12"), else None."""
    value = _WORD_VALUES.get(word.lower())
    return None if value is None else str(value)


def _number(token: str) -> str:
    """A digit token as a comparable figure: no thousands commas, no ":00" or ".00" tail."""
    plain = token.replace(",", "")
    for zeros in (":00", ".00", ".0"):
        if plain.endswith(zeros):
            plain = plain[: -len(zeros)]
    return plain


def stated(text: str) -> set[str]:
    """The figures ``text`` states in digits ("$1,200" → 1200, "8:00 pm" → 8, "3rd" → 3)."""
    return {_number(m.group()) for m in _DIGITS.finditer(text)}


def told(texts: Iterable[str]) -> set[str]:
    """Every figure ``texts`` hold, in digits or in words ("three" → 3, "twenty-four" → 24, "two
    hundred fifty" → 250); a time also holds its hour ("8:30" → 8:30 and 8)."""
    figures: set[str] = set()
    for text in texts:
        for figure in stated(text):
            figures.add(figure)
            if ":" in figure:
                figures.add(figure.split(":", 1)[0])
        figures.update(_worded(text.lower()))
    return figures


def _worded(text: str) -> set[str]:
    """Figures written in words, alone and as runs ("two hundred fifty", "twenty four", "a hundred",
    "one thousand two hundred")."""
    found: set[str] = set()
    thousands, group = 0, 0
    last = ""  # the run's last word: "unit", "tens" or "scale"; "" outside a run
    for word in _WORDS.findall(text):
        parts = word.split("-")
        if all(p in _WORD_VALUES for p in parts):
            value = sum(_WORD_VALUES[p] for p in parts)
            found.add(str(value))
            if last == "scale" or (last == "tens" and value < 10):
                group += value
            else:
                thousands, group = 0, value
            last = "tens" if word in _TENS else "unit"
        elif word == "hundred":
            group = (group or 1) * 100
            last = "scale"
        elif word == "thousand":
            thousands, group = thousands + (group or 1) * 1000, 0
            last = "scale"
        else:
            thousands, group, last = 0, 0, ""
            continue
        found.add(str(thousands + group))
    return found


def made_up(sentence: str, known: set[str]) -> set[str]:
    """The figures ``sentence`` states that nothing in ``known`` (from ``told``) holds."""
    return {figure for figure in stated(sentence) if figure not in known}
