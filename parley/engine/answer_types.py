"""What kind of answer a question asks for, and which facts hold one.

A sentence embedding places "Where are you located?" far from "The office is at 12 Birch Road, next to
the public library." (MiniLM: 0.23, below an unrelated fact about prices), so the agent held the
question as one its facts do not answer and said it did not know its own address. And "What does the
first visit cost?" sits at 0.39 from "A first consultation is free.", short of the similarity at which
an answer's first sentence is checked, so the model's "$3,500" (another fact's price) was said unchecked.
The kind of answer asked for is plain in the question's words, and in the facts' (an address, an amount,
"24/7", the towns served).
"""

from __future__ import annotations

import re
from enum import StrEnum


class AnswerKind(StrEnum):
    PLACE = "place"
    PRICE = "price"
    ALWAYS_OPEN = "always_open"
    """Asked whether the business is open or comes out at a given time ("Are you open on Christmas
    Day?", "Can someone come at 2 in the morning?"), which a fact that it always is answers."""
    AREA = "area"
    """Asked whether the business serves a place ("Do you cover Denver?", "Do you also come out to
    Capital City?"), which the fact naming the places it serves answers, yes or no."""
    HOURS = "hours"
    """Asked when the business opens or closes ("How late are you open tonight?", "What are your
    hours?"), which the facts holding times of day answer: the model made up "7 am to 2 pm" for a shop
    open to 8 pm, in a sentence the embedding put as close to the fact as the right one."""


DECISIVE = frozenset({AnswerKind.PLACE, AnswerKind.ALWAYS_OPEN, AnswerKind.AREA})
"""Kinds a fact answers whatever the embedding says: an address answers "where are you", and "24 hours
a day, 7 days a week" answers "are you open on Christmas Day". A price is no such answer: "How much is
teeth whitening?" is not answered by the price of a consultation, it only gets its answer checked."""


_ASKS: dict[AnswerKind, re.Pattern[str]] = {
    AnswerKind.PLACE: re.compile(
        r"\bwhere(?:'s| is| are)\s+(?:you|y'all|your\b|the (?:office|shop|store|studio|clinic|practice"
        r"|restaurant|business|library|salon|garage))|\b(?:address|located|location|directions|find you"
        r"|get to you|get there)\b",
        re.IGNORECASE,
    ),
    AnswerKind.PRICE: re.compile(
        r"\bhow much(?:\s+(?:is|are|does|do|did|for|to|would|will|should|money)\b|'s)"
        r"|\b(?:cost|costs|price|prices|pricing|charge|charges|fee|fees|rate|rates)\b",
        re.IGNORECASE,
    ),
    AnswerKind.ALWAYS_OPEN: re.compile(
        r"^(?=.*\b(?:open|available|come|come out|send (?:someone|somebody|a \w+)|get (?:someone|somebody"
        r"|a \w+) (?:out|over)|work|answer|reach you)\b)(?=.*\b(?:nights?|tonight|overnight|midnight|late"
        r"|early|mornings?|afternoons?|evenings?|weekends?|sundays?|saturdays?|holidays?|christmas"
        r"|thanksgiving|new year'?s?|easter|\d{1,2}(?::\d\d)?\s*(?:am|pm|a\.m\.|p\.m\.|o'clock)|at \d{1,2}"
        r"|after hours)\b)",
        re.IGNORECASE,
    ),
    AnswerKind.HOURS: re.compile(
        r"\b(?:how (?:late|early)|until when|till when|(?:opening|business|office|store|shop) hours"
        r"|hours of operation|your hours|(?:what|which) hours)\b"
        r"|\b(?:what time|when)\b.*\b(?:open|opens|opening|close|closes|closing|shut)\b",
        re.IGNORECASE,
    ),
    AnswerKind.AREA: re.compile(
        r"(?i:\b(?:cover|serve|service|work in|operate in)\b)(?:\s+(?i:the|also|out|to|in))*\s+[A-Z]"
        r"|(?i:\b(?:come (?:out )?to|travel to|deliver to|go to|do (?:jobs|work|moves?) (?:in|to)|moves? to)"
        r"\s+(?:the\s+)?(?!(?:my|your|our|his|her|their|a|an|me|us|you|it|him|them)\b)[a-z]\w+)"
    ),
}

_STREET = (
    r"Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct|Place|Pl|Parkway|Pkwy"
    r"|Highway|Hwy|Square|Sq|Terrace|Plaza"
)
"""Capitalized, as in an address: "3 dollars per drive" is no street."""
_HOLDS: dict[AnswerKind, re.Pattern[str]] = {
    AnswerKind.PLACE: re.compile(
        rf"\b\d+[A-Za-z]?\s+(?:[A-Z][\w'-]*\s+){{1,4}}(?:{_STREET})\b|(?i:\b(?:located|our address|next to"
        r"|across (?:the street )?from|on the corner of|(?:first|second|third|\d+(?:st|nd|rd|th)) floor)\b)"
    ),
    AnswerKind.PRICE: re.compile(
        r"[$€£]\s?\d|\b\d[\d,.]*\s*(?:dollars?|euros?|pounds?|cents?|usd|eur|gbp)\b|\bfree\b",
        re.IGNORECASE,
    ),
    AnswerKind.ALWAYS_OPEN: re.compile(
        r"\b(?:24 hours|24/7|24-7|twenty-four hours|(?:a)?round the clock|any time of (?:the )?(?:day|night)"
        r"|(?:7|seven) days a week|every day of the year|365 days)\b",
        re.IGNORECASE,
    ),
    AnswerKind.HOURS: re.compile(
        r"\b\d{1,2}(?::\d\d)?\s*(?:am|pm|a\.m\.|p\.m\.)(?!\w)|\b(?:noon|midnight|o'clock)\b", re.IGNORECASE
    ),
    AnswerKind.AREA: re.compile(
        r"\b(?:serves?|serving|covers?)\s+(?:(?i:the|all of|only)\s+)?[A-Z]|(?i:\b(?:service area"
        r"|(?:we|i) (?:only )?(?:work|deliver|operate|travel|move) (?:in|to|within)"
        r"|(?:moves?|jobs|deliveries) (?:within|in)|within \d+ (?:miles|kilometers|km))\b)"
    ),
}


def asked_for(question: str) -> set[AnswerKind]:
    """The kinds of answer ``question`` asks for (maybe none)."""
    return {kind for kind, asks in _ASKS.items() if asks.search(question)}


_PLACE_NAME = re.compile(r"[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*")


def asked_place(question: str) -> str | None:
    """The place a question asks whether the business serves ("Capital City" of "Do you also come out
    to Capital City?"), if it asks that and the name is written as one (speech recognition may not)."""
    if _ASKS[AnswerKind.AREA].search(question) is None:
        return None
    names = [name.group() for name in _PLACE_NAME.finditer(question) if name.start() > 0]
    return names[-1] if names else None


def affirms_unnamed_place(question: str, answer: str, fact: str) -> bool:
    """An answer that says yes to serving the place asked about (or names it, and no "no" or "only")
    when the fact it restates does not name that place: "Yes, we serve Denver, Arvada and Golden."
    from "We serve Lakewood, Arvada and Golden."."""
    place = asked_place(question)
    if place is None or place.lower() in fact.lower() or _DENIES.search(answer):
        return False
    return _YES.match(answer) is not None or place.lower() in answer.lower()


_YES = re.compile(r"^\W*(?:yes|yeah|yep|sure|absolutely|certainly|of course)\b", re.IGNORECASE)
_DENIES = re.compile(r"\b(?:no|not|only|don'?t|doesn'?t|outside|unfortunately|sorry)\b", re.IGNORECASE)


def held_by(fact: str) -> set[AnswerKind]:
    """The kinds of answer ``fact`` holds."""
    return {kind for kind, holds in _HOLDS.items() if holds.search(fact)}
