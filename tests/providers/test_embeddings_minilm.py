"""all-MiniLM-L6-v2 from its PyPI packages: a question is near the fact that answers it and far from
facts about other things, which is what a grounded agent's check relies on."""

from __future__ import annotations

import numpy as np
import pytest

from parley.engine.grounding import MIN_SIMILARITY
from parley.providers.assets import minilm_files
from parley.providers.embeddings.minilm import MiniLMEmbedder

pytestmark = pytest.mark.models


def test_questions_are_near_their_answers_and_far_from_other_facts() -> None:
    embedder = MiniLMEmbedder(*minilm_files())
    facts = ["Pets are not allowed in the apartments.", "The gym opens at 6 am."]
    vectors = embedder.embed(facts)
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    near = vectors @ embedder.embed(["Can I keep a cat in my flat?"])[0]
    far = vectors @ embedder.embed(["Do you sell train tickets?"])[0]
    assert near[0] > MIN_SIMILARITY and near[0] > near[1]
    assert far.max() < MIN_SIMILARITY
    assert embedder.embed([]).shape == (0, 384)
