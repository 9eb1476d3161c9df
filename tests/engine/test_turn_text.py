"""The transcript heuristic: finished sentences score above 0.5, hanging phrases below."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from parley.engine import turn_text
from parley.engine.turn_text import text_completeness

FINISHED = [
    "What's the weather like in Paris tomorrow?",
    "Book a table for two at 8.",
    "I need to cancel my appointment.",
    "Thanks!",
    "No.",
    "Mm-hmm.",
    "What's it like?",
    "Can you book me a table for two people at eight tonight?",
    '"Hello?" ',
    "Is that all?",
]

HANGING = [
    "What's the weather like in...",  # whisper's ellipsis on a trailing-off voice
    "What's the weather like in?",  # whisper closes a cut-off question anyway
    "What's the weather like in",
    "I need to cancel my appointment and",
    "I need to cancel my appointment and.",
    "Can you tell me the",
    "Can you tell me the.",
    "I'm looking for a gift for my",
    "So I wanted to ask, um",
    "I want to go to",
    "Could you check whether the blue jacket is",
    "My order number is,",
    "How much would it cost to ship a package to-",
    "I was thinking about…",
    "Well, so I called yesterday about",
]


@pytest.mark.parametrize("text", FINISHED)
def test_finished_sentences_look_complete(text: str) -> None:
    assert text_completeness(text) > 0.5


@pytest.mark.parametrize("text", HANGING)
def test_hanging_phrases_look_incomplete(text: str) -> None:
    assert text_completeness(text) < 0.5


def test_nothing_heard_is_nothing_to_answer() -> None:
    assert text_completeness("") == 0.0
    assert text_completeness("   ") == 0.0
    assert text_completeness("...") == 0.0


def test_evidence_ranks_the_same_sentence_in_order() -> None:
    cut_after_preposition = text_completeness("I want to fly to")
    no_punctuation = text_completeness("I want to fly to Paris")
    finished = text_completeness("I want to fly to Paris.")
    assert cut_after_preposition < no_punctuation < finished


def test_case_and_closing_quotes_do_not_matter() -> None:
    assert text_completeness("I'd like to order a pizza AND") == text_completeness(
        "i'd like to order a pizza and"
    )
    assert text_completeness("He said 'yes.'") == text_completeness("He said yes.")


@pytest.mark.parametrize(
    "words",
    [
        turn_text.ARTICLES,
        turn_text.DETERMINERS,
        turn_text.CONJUNCTIONS,
        turn_text.SOFT_CONNECTIVES,
        turn_text.PREPOSITIONS,
        turn_text.AUXILIARIES,
        turn_text.FILLERS,
    ],
    ids=["articles", "determiners", "conjunctions", "soft", "prepositions", "auxiliaries", "fillers"],
)
@pytest.mark.parametrize("mark", ["", ".", "!", "?"])
def test_every_listed_word_weakens_the_ending_it_closes(words: frozenset[str], mark: str) -> None:
    plain = text_completeness(f"Tell me more{mark}")
    for word in words:
        assert text_completeness(f"Tell me more {word}{mark}") < plain, word


def test_strong_continuations_stay_incomplete_whatever_the_punctuation() -> None:
    for word in turn_text.ARTICLES | turn_text.CONJUNCTIONS | turn_text.FILLERS | turn_text.PREPOSITIONS:
        for mark in ("", ".", "!", "?"):
            assert text_completeness(f"Tell me more {word}{mark}") < 0.5, (word, mark)


@given(st.text(max_size=200))
def test_any_text_scores_within_bounds(text: str) -> None:
    assert 0.0 <= text_completeness(text) <= 1.0


def test_backchannels_and_stray_letters_are_not_real_words() -> None:
    from parley.engine.turn_text import real_words

    backchannels = ["uh-huh", "uh huh", "okay", "yeah"]
    assert real_words("Uh-huh, yeah.", backchannels) == []
    assert real_words("S", backchannels) == []
    assert real_words("Okay, wait a second", backchannels) == ["wait", "a", "second"]
