"""An embedder that remembers the sentences it embedded lately.

A grounded agent's checks look at the same texts more than once: the caller's message is embedded to
judge whether it asks about the facts and again to find the tool it requests; the tool descriptions are
embedded by both. Each embedding costs a few milliseconds of CPU on the reply's critical path.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from parley.providers.embeddings.base import SentenceEmbedder, Vectors

REMEMBERED = 256
"""Texts kept: a call's facts, tool descriptions and its last few messages fit with room to spare."""


class RecentEmbeddings:
    """Wraps a ``SentenceEmbedder``; embeds only texts it has not seen among the last ``size``."""

    def __init__(self, embedder: SentenceEmbedder, size: int = REMEMBERED) -> None:
        self.name = embedder.name
        self._embedder = embedder
        self._size = size
        self._rows: OrderedDict[str, Vectors] = OrderedDict()
        self._lock = threading.Lock()  # the checks embed from worker threads
        self.embedded = 0
        """Texts handed to the wrapped embedder so far."""

    def embed(self, texts: Sequence[str]) -> Vectors:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._rows))
            if missing:
                for text, row in zip(missing, self._embedder.embed(missing), strict=True):
                    self._rows[text] = row
                self.embedded += len(missing)
            rows = [self._rows[t] for t in texts]
            for text in texts:
                self._rows.move_to_end(text)
            while len(self._rows) > self._size:
                self._rows.popitem(last=False)
        return np.stack(rows) if rows else self._embedder.embed([])
