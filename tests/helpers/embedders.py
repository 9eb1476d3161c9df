"""An embedder for tests that keeps every text it was asked to embed."""

from __future__ import annotations

from collections.abc import Sequence

from parley.providers.embeddings.base import Vectors
from parley.providers.embeddings.hashing import HashingEmbedder


class CountingEmbedder(HashingEmbedder):
    """The hashing embedder, with ``seen``: each text handed to it, in order, repeats included."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.seen.extend(texts)
        return super().embed(texts)
