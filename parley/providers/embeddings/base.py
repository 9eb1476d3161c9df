"""The sentence-embedding Protocol."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class SentenceEmbedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> Vectors:
        """One unit-length row per text, so a dot product is the cosine similarity. Blocking: call it off
        the event loop for anything but a few short texts."""
        ...
