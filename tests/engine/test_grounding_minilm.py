"""The grounding check with the embedding model agents ship with: answers it judges are the 0.5B
model's real ones, which a hashing embedder does not place as MiniLM does."""

from __future__ import annotations

import pytest

from parley.engine.grounding import GroundingCheck
from parley.providers.assets import minilm_files
from parley.providers.embeddings.minilm import MiniLMEmbedder

pytestmark = pytest.mark.models

VET_FACTS = [
    "Harbor Veterinary Clinic is open weekdays 7 am to 7 pm and Saturday 9 am to noon.",
    "We are closed on Sundays.",
    "We treat dogs, cats and rabbits; we do not treat birds or reptiles.",
]


@pytest.fixture(scope="module")
def check() -> GroundingCheck:
    return GroundingCheck(MiniLMEmbedder(*minilm_files()), VET_FACTS)


async def test_a_yes_built_around_the_questions_own_word_is_not_backed(check: GroundingCheck) -> None:
    """MiniLM puts this answer close to the opening hours, but "holidays" is only the caller's word."""
    question = "Do you board pets over the holidays?"
    unbacked = await check.unbacked_answer(question, "Yes, Harbor Veterinary Clinic is open on holidays.")
    assert unbacked is not None
    assert "holidays" not in unbacked.instead("I don't know.")


async def test_a_yes_whose_words_the_facts_have_is_still_backed(check: GroundingCheck) -> None:
    """The question's own words ("Saturday", "cat") in the answer are fine when a fact has them."""
    question = "Can I bring my cat in on Saturday?"
    answer = "Yes, Harbor Veterinary Clinic is open Saturday 9 am to noon."
    assert await check.unbacked_answer(question, answer) is None
    assert await check.unbacked_answer("Do you see rabbits?", "Yes, we treat dogs, cats and rabbits.") is None
