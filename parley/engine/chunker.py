"""Cut streamed LLM text into clauses worth speaking, the first one short so audio starts early."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"[.!?…]+[\"')\]]*(?=\s)")
_CLAUSE_END = re.compile(r"[,;:—–]+(?=\s)")
_LINE_END = re.compile(r"\S[^\S\n]*\n")
"""A line the model ended ("Here's a story about a dragon:" then a blank line, an item of a list)."""
_LIST_MARK = re.compile(r"\s*\d{1,2}")
"""A line's start that a full stop after it numbers ("1. Red"), not ends."""
_WORD = re.compile(r"\S+")
_OPENING_QUOTES = '"“«'
PHRASE_OPENERS = frozenset(
    {
        "and",
        "but",
        "or",
        "so",
        "because",
        "for",
        "with",
        "which",
        "who",
        "where",
        "when",
        "while",
        "if",
        "although",
        "though",
        "since",
        "until",
        "unless",
        "after",
        "before",
        "from",
        "about",
        "into",
        "through",
        "during",
        "without",
    }
)
"""English words that open a phrase: a speaker may breathe before them ("Parley is an open-source
platform | for voice agents"), so the first piece may end there when no punctuation comes soon. ("of" and
"to" are left out: "the capital | of France" and "I'd like | to help" are not phrases.)"""


class ClauseChunker:
    """Feed text deltas; get back speakable pieces.

    The first piece is cut at the first clause boundary (comma, colon, dash) once it has ``first_min_words``
    words, so TTS can start while the LLM is still writing; with no punctuation, before a quotation, or
    before a word that opens a phrase ("for", "because", …) once it has ``first_phrase_words`` (a long
    first sentence is heard about half a second sooner on a small CPU model, which writes a word in about
    50 ms). Later pieces are whole sentences unless they grow past ``max_words``, then they are cut at a
    clause boundary. The end of a line ends a piece as a sentence does: a heading or list item has no full
    stop, and waiting for the next one left the caller in silence while the model wrote a whole paragraph.
    """

    def __init__(self, first_min_words: int = 3, max_words: int = 25, first_phrase_words: int = 4) -> None:
        self.first_min_words = first_min_words
        self.first_phrase_words = first_phrase_words
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
        sentence = next(
            (m for m in _SENTENCE_END.finditer(text) if not _LIST_MARK.fullmatch(_line(text, m))), None
        )
        ends = [match.end() for match in (sentence, _LINE_END.search(text)) if match]
        if ends:
            return min(ends)
        words = len(text.split())
        want_clause = (self._emitted == 0 and words > self.first_min_words) or words > self.max_words
        if want_clause:
            for match in _CLAUSE_END.finditer(text):
                if len(text[: match.end()].split()) >= self.first_min_words:
                    return match.end()
        if self._emitted == 0:
            return self._phrase_cut(text)
        return None

    def _phrase_cut(self, text: str) -> int | None:
        """Where a quotation opens, after ``first_min_words`` words ("The joke is | "Why did…"), or a
        phrase opener, after ``first_phrase_words`` (a whole word: a space follows it)."""
        for index, word in enumerate(_WORD.finditer(text)):
            opener = word.group()
            if opener[0] in _OPENING_QUOTES and index >= self.first_min_words:
                return word.start()
            whole = word.end() < len(text)
            if index >= self.first_phrase_words and whole and opener.lower() in PHRASE_OPENERS:
                return word.start()
        return None


def _line(text: str, match: re.Match[str]) -> str:
    """The text of ``match``'s line before it."""
    return text[text.rfind("\n", 0, match.start()) + 1 : match.start()]


def sentence_end(text: str) -> re.Match[str] | None:
    """Where the first sentence of ``text`` ends, once the text after it has begun."""
    return _SENTENCE_END.search(text)


def fixed_clauses(text: str) -> list[str]:
    """The clauses a fixed text (a greeting, an announcement) is spoken in, as a reply would cut them: a
    phrase cache warmed with these serves the reply."""
    chunker = ClauseChunker()
    return [*chunker.push(text + " "), *chunker.flush()]
