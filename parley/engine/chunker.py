"""Cut streamed LLM text into clauses worth speaking, the first one short so audio starts early."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)")
_CLAUSE_END = re.compile(r"[,;:—–]+(?=\s)")


class ClauseChunker:
    """Feed text deltas; get back speakable pieces.

    The first piece is cut at the first clause boundary (comma, colon, dash) once it has ``first_min_words``
    words, so TTS can start while the LLM is still writing. Later pieces are whole sentences unless they
    grow past ``max_words``, then they are cut at a clause boundary.
    """

    def __init__(self, first_min_words: int = 3, max_words: int = 25) -> None:
        self.first_min_words = first_min_words
        self.max_words = max_words
        self._buffer = ""
        self._emitted = 0

    def push(self, delta: str) -> list[str]:
        self._buffer += delta
        pieces: list[str] = []
        while True:
            cut = self._find_cut()
            if cut is None:
                break
            piece, self._buffer = self._buffer[:cut].strip(), self._buffer[cut:]
            if piece:
                pieces.append(piece)
                self._emitted += 1
        return pieces

    def flush(self) -> list[str]:
        piece, self._buffer = self._buffer.strip(), ""
        if piece:
            self._emitted += 1
            return [piece]
        return []

    def _find_cut(self) -> int | None:
        text = self._buffer
        sentence = _SENTENCE_END.search(text)
        if sentence and len(text[: sentence.end()].split()) >= 1:
            return sentence.end()
        words = len(text.split())
        want_clause = (self._emitted == 0 and words > self.first_min_words) or words > self.max_words
        if want_clause:
            for match in _CLAUSE_END.finditer(text):
                if len(text[: match.end()].split()) >= self.first_min_words:
                    return match.end()
        return None


def sentence_end(text: str) -> re.Match[str] | None:
    """Where the first sentence of ``text`` ends, once the text after it has begun."""
    return _SENTENCE_END.search(text)


def fixed_clauses(text: str) -> list[str]:
    """The clauses a fixed text (a greeting, an announcement) is spoken in, as a reply would cut them: a
    phrase cache warmed with these serves the reply."""
    chunker = ClauseChunker()
    return [*chunker.push(text + " "), *chunker.flush()]
