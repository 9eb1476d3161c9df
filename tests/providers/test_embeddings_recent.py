"""The embedder wrapper a session's checks share: same vectors, each text embedded once."""

from __future__ import annotations

import numpy as np

from parley.providers.embeddings.hashing import HashingEmbedder
from parley.providers.embeddings.recent import RecentEmbeddings
from tests.helpers.embedders import CountingEmbedder


def test_gives_the_wrapped_embedders_vectors_in_the_order_asked() -> None:
    inner = CountingEmbedder()
    recent = RecentEmbeddings(inner)
    texts = ["Is there parking?", "Book me for Tuesday.", "Is there parking?"]
    np.testing.assert_allclose(recent.embed(texts), HashingEmbedder().embed(texts))
    assert inner.seen == ["Is there parking?", "Book me for Tuesday."]  # a repeat in one batch once


def test_a_text_seen_lately_is_not_embedded_again() -> None:
    inner = CountingEmbedder()
    recent = RecentEmbeddings(inner)
    recent.embed(["Send a plumber.", "Book a visit."])
    again = recent.embed(["Book a visit.", "What time do you open?"])
    assert inner.seen == ["Send a plumber.", "Book a visit.", "What time do you open?"]
    np.testing.assert_allclose(again, HashingEmbedder().embed(["Book a visit.", "What time do you open?"]))
    assert recent.embedded == 3


def test_only_the_most_recently_used_texts_are_kept() -> None:
    inner = CountingEmbedder()
    recent = RecentEmbeddings(inner, size=2)
    recent.embed(["one"])
    recent.embed(["two"])
    recent.embed(["one"])  # used again: "two" is now the oldest
    recent.embed(["three"])
    recent.embed(["one", "two"])
    assert inner.seen == ["one", "two", "three", "two"]
