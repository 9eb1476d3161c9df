"""Is a caller's question about anything a grounded agent knows?

A small model answers "yes" to almost any question about a business, known or not ("Is there a pool?"
→ "Yes, there is a pool."). Told to admit what its facts do not say, it still does not: it cannot tell
what it does not know. An embedding model can tell how close a question is to each fact, though. When
a question is far from all of them (and from ordinary small talk), the agent's reply is held: a tool
call still goes ahead, but words are replaced by the agent's ``unknown_answer``. Questions only: a
statement ("Book me for Tuesday") is left to the model and its tools.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import numpy as np

from parley.providers.embeddings.base import SentenceEmbedder, Vectors

MIN_SIMILARITY = 0.3
"""Below this cosine similarity to every fact, a question is about something else (all-MiniLM-L6-v2:
unrelated sentences mostly score 0.0–0.25, a question and the fact answering it 0.4–0.9)."""
SMALL_TALK = (
    "Hello, how are you?",
    "Who am I speaking with?",
    "What is your name?",
    "Can you hear me?",
    "Are you a real person or a robot?",
    "What can you help me with?",
    "Sorry, could you say that again?",
    "Is that right?",
)
"""Questions any agent may answer without facts: close to one of these, a question is not held."""
SMALL_TALK_SIMILARITY = 0.5


def is_question(text: str) -> bool:
    """Speech recognition punctuates questions; typed text usually has its own question mark."""
    return text.rstrip().endswith("?")


class GroundingCheck:
    """Embeds the agent's facts once (off the event loop), then judges questions against them."""

    def __init__(
        self,
        embedder: SentenceEmbedder,
        facts: Sequence[str],
        *,
        passages: Callable[[str], Sequence[str]] | None = None,
        min_similarity: float = MIN_SIMILARITY,
    ) -> None:
        self._embedder = embedder
        self._facts = list(facts)
        self._passages = passages
        self._min = min_similarity
        self._vectors: tuple[Vectors, Vectors] | None = None

    async def off_knowledge(self, text: str) -> bool:
        """True for a question that nothing the agent knows is about."""
        if not is_question(text):
            return False
        if self._passages is not None and self._passages(text):
            return False  # its documents have passages for it
        return await asyncio.to_thread(self._far_from_facts, text)

    def _far_from_facts(self, text: str) -> bool:
        if self._vectors is None:
            self._vectors = (self._embedder.embed(self._facts), self._embedder.embed(SMALL_TALK))
        facts, talk = self._vectors
        question = self._embedder.embed([text])[0]
        near_fact = float(np.max(facts @ question)) if len(facts) else -1.0
        near_talk = float(np.max(talk @ question))
        return near_fact < self._min and near_talk < SMALL_TALK_SIMILARITY
