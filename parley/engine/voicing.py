"""The side of a reply that says what its thinking decides (``Reply`` in ``engine/reply.py``).

The model's rounds, the tools run between them and the agent's own lines all hand their words over
through this one face, so none of them needs to know of synthesis or playout.
"""

from __future__ import annotations

from typing import Protocol

from parley.engine.chunker import fixed_clauses


class Voicing(Protocol):
    """The side of a reply that says what is decided (``Reply``)."""

    segments: list[str]
    """The clauses handed over so far."""
    end_after: str | None

    def add_segment(self, text: str) -> None:
        """Say ``text`` (one clause) after the ones before it."""
        ...

    async def wait_until_heard(self) -> None:
        """Return once every clause handed over so far has been played out."""
        ...


def say_fixed(voicing: Voicing, text: str) -> None:
    """Say ``text`` as written, clause by clause (a tool's ``say()``, a line of the agent's)."""
    for piece in fixed_clauses(text):
        voicing.add_segment(piece)
