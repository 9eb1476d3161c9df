"""A bag-of-words embedder with no model: deterministic and instant, for tests and for machines without
the MiniLM files. Sentences that share words are close; it knows no synonyms ("dog" is not "pet")."""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import numpy as np

from parley.providers.embeddings.base import Vectors

_WORD = re.compile(r"[a-z0-9']+")
_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "is",
        "are",
        "do",
        "does",
        "you",
        "your",
        "we",
        "our",
        "i",
        "my",
        "me",
        "to",
        "of",
        "in",
        "on",
        "at",
        "for",
        "and",
        "or",
        "can",
        "it",
        "there",
    ]
)


class HashingEmbedder:
    name = "hashing"

    def __init__(self, dimensions: int = 512) -> None:
        self.dimensions = dimensions

    def embed(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimensions), np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                if word not in _STOP:
                    out[row, zlib.crc32(word.rstrip("s").encode()) % self.dimensions] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        vectors: Vectors = out / np.maximum(norms, 1e-9)
        return vectors
