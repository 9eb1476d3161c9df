"""Did the caller ask for what one of the agent's tools does, in words that fill its arguments?

A small model sometimes answers a plain request with words instead of the call. After an "I don't know"
earlier in the call, "Please send someone to 42 Maple Street, my kitchen sink is leaking" got the same
"I don't know" back; "Can a mechanic call me with a quote?" got "Yes, I can call a mechanic", and no
call. When a caller's message is close to what a tool does, the model is asked for that tool's call
(``tool_choice``), and the call goes ahead only when every required argument is something the caller
said: a day, a name, an address from their own words, not one the model made up to fill the form. A
call that fails that test is dropped and the model answers as it would have. A message with a negation
("Don't send anyone to 42 Maple Street") is left to the model: its words would fill the call.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from parley.engine.figures import number_word
from parley.engine.grounding import ACTION_SIMILARITY, sentences
from parley.providers.embeddings.base import SentenceEmbedder, Vectors
from parley.providers.llm.base import ToolSpec

_TOKEN = re.compile(r"\d+|[^\W\d_]+")
_FILLER = frozenset(
    """a an the of at on in for to by from with and or is are my me our your his her its their am
    pm""".split()  # noqa: SIM905
)
"""Words that fill a value without saying anything of it ("at 3 pm" is grounded by its 3)."""
_NEGATION = re.compile(r"\b(?:no|not|never|nobody|nothing)\b|n't\b|\bdont\b", re.IGNORECASE)
_MIN_STEM = 3
"""Shortest word that matches by its start ("wed" for "Wednesday", "leak" for "leaking")."""
CALLER_TURNS = 2
"""Earlier caller messages whose words may fill a call too ("My name is Dana." … "Tuesday at 3, please.")."""


def _tokens(text: str) -> list[str]:
    """Words and digit runs, a number word as its digits ("three" → "3")."""
    return [number_word(token) or token for token in _TOKEN.findall(text.lower())]


def _words(text: str) -> set[str]:
    return {str(int(token)) if token.isdigit() else token for token in _tokens(text)}


def _all_words(texts: Iterable[str]) -> set[str]:
    return set().union(*(_words(text) for text in texts))


def _matches(token: str, heard: set[str]) -> bool:
    if token in heard:
        return True
    if len(token) < _MIN_STEM or token.isdigit():
        return False
    return any(
        len(word) >= _MIN_STEM and (word.startswith(token) or token.startswith(word)) for word in heard
    )


def said_by_caller(value: Any, heard: set[str]) -> bool:
    """Whether at least half of an argument value's meaningful words are the caller's: "42 Maple Street"
    for a caller who said it, not "123 Elm Street" (whose "street" alone they said)."""
    tokens = _words(str(value)) - _FILLER
    return bool(tokens) and 2 * sum(_matches(token, heard) for token in tokens) >= len(tokens)


def callers_arguments(
    arguments: Mapping[str, Any], required: Sequence[str], said: Iterable[str]
) -> dict[str, Any] | None:
    """The arguments that are the caller's words (``said``: their recent messages), or None unless every
    required one is. An optional one the model made up (a phone number nobody said) is left out."""
    heard = _all_words(said)
    kept = {name: value for name, value in arguments.items() if said_by_caller(value, heard)}
    return kept if required and all(name in kept for name in required) else None


def asked_in(arguments: Mapping[str, Any], message: str) -> bool:
    """Whether a call takes any of its arguments from the caller's words in ``message`` (a call without
    arguments cannot tell, and counts as asked)."""
    heard = _words(message)
    return not arguments or any(said_by_caller(value, heard) for value in arguments.values())


_PHONE = re.compile(r"\+?\d[\d\s().-]{5,}\d")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^\W_]+")
_EMAIL_WORDS = frozenset({"at", "dot", "com", "org", "net"})
"""How an address is spoken or ends, not what makes it the caller's."""
MIN_PHONE_DIGITS = 7
PHONE_TAIL = 10
"""Digits that identify a number whatever country code is written before them."""


def _digits(text: str) -> str:
    """The digits said in ``text``, spelled out ones included ("five five five, 0134" → 5550134)."""
    return "".join(token for token in _tokens(text) if token.isdigit())


def made_up_contact(value: Any, known: Sequence[str]) -> bool:
    """Whether ``value`` is a phone number or an e-mail address found in none of ``known`` (what the
    caller said, the agent's prompt, tool results): the model made it up to fill the form ("123-456-
    7890"), and a message sent to it would reach a stranger."""
    text = str(value).strip()
    if _EMAIL.fullmatch(text):
        heard = _all_words(known)
        return not (_words(text) - _EMAIL_WORDS) <= heard
    digits = re.sub(r"\D", "", text)
    if _PHONE.fullmatch(text) and len(digits) >= MIN_PHONE_DIGITS:
        return not any(digits[-PHONE_TAIL:] in _digits(k) for k in known)
    return False


_PERSON_ARGUMENT = re.compile(
    r"(?:^|_)(?:name|owner|customer|caller|patient|client|guest|student|attendee)(?:$|_)", re.IGNORECASE
)
"""Argument names that hold who someone is ("name", "customer_name", "owner")."""
_RELATIVE_DAYS = frozenset("today tonight tomorrow weekend next week".split())  # noqa: SIM905
"""Words from which a model with the date may rightly work out a day nobody named."""


def made_up_detail(argument: str, value: Any, known: Sequence[str]) -> bool:
    """Whether an argument's value is a detail of the caller's that nobody gave (``known``: what the
    caller said, the agent's prompt, tool results): a made-up contact (``made_up_contact``), a person's
    name (the 0.5B model books "John Doe"), or a day or month (it books the example call's "Friday")."""
    if made_up_contact(value, known):
        return True
    if not isinstance(value, str) or not value.strip():
        return False
    heard = _all_words(known)
    if _PERSON_ARGUMENT.search(argument) and not said_by_caller(value, heard):
        return True
    return not heard & _RELATIVE_DAYS and any(
        token.rstrip("s") in _CALENDAR for token in unheard_values(value, known)
    )


_CALENDAR = frozenset(
    """monday tuesday wednesday thursday friday saturday sunday january february march april june july
    august september october november december""".split()  # noqa: SIM905
)
"""Days and months ("may" is also a verb, and is left out)."""


def unheard_values(text: str, known: Iterable[str]) -> list[str]:
    """The days, months and numbers ``text`` names that none of ``known`` does (a day by its first three
    letters, so "Fri" and "Fridays" count for "Friday"; a number spelled out or in digits). After a
    booking with an address only, the 0.5B model confirmed "Done: you're booked for Friday", the example
    call's day."""
    heard = _all_words(known)
    stems = {word[:_MIN_STEM] for word in heard if _names_a_date(word)}
    unheard: list[str] = []
    for token in _tokens(text):
        if token.isdigit():
            if str(int(token)) not in heard:
                unheard.append(token)
        elif token.rstrip("s") in _CALENDAR and token[:_MIN_STEM] not in stems:
            unheard.append(token)
    return unheard


def _names_a_date(word: str) -> bool:
    """A day or month, in full, plural ("Fridays") or cut short ("Fri", "Thurs", "Sept")."""
    return len(word) >= _MIN_STEM and any(name.startswith(word.rstrip("s")) for name in _CALENDAR)


def required_arguments(spec: ToolSpec) -> list[str]:
    required = spec.parameters.get("required", [])
    return [name for name in required if isinstance(name, str)] if isinstance(required, list) else []


class ToolRequests:
    """The agent's tools that take required arguments, embedded once (off the event loop)."""

    def __init__(self, embedder: SentenceEmbedder, specs: Sequence[ToolSpec]) -> None:
        self._embedder = embedder
        self.specs = [spec for spec in specs if required_arguments(spec) and spec.description.strip()]
        self._vectors: Vectors | None = None

    async def nearest(self, text: str) -> ToolSpec | None:
        """The tool whose description ``text`` is closest to, at or above ``ACTION_SIMILARITY``."""
        if not self.specs or not text.strip() or _NEGATION.search(text):
            return None
        return await asyncio.to_thread(self._nearest, text)

    def _nearest(self, text: str) -> ToolSpec | None:
        if self._vectors is None:
            self._vectors = self._embedder.embed([spec.description for spec in self.specs])
        closeness = np.max(self._vectors @ self._embedder.embed(sentences(text)).T, axis=1)
        best = int(np.argmax(closeness))
        return self.specs[best] if float(closeness[best]) >= ACTION_SIMILARITY else None
