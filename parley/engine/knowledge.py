"""An agent's documents, cut into passages and searched with BM25, so each turn gets the few that matter.

Pure: text in, passages out. Extraction (PDF), storage and upload limits live in the platform; the
session only asks ``search(question, max_tokens)`` once per turn. Retrieval is lexical (``bm25s``), so it
runs offline, in microseconds per query, and needs no model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import bm25s  # type: ignore[import-untyped]
from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

TARGET_WORDS = 80
"""A passage closes at the end of a paragraph once it has this many words."""
MAX_WORDS = 150
"""…and never grows past this many (a longer sentence is cut at word boundaries)."""
DEFAULT_TOP_K = 4

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(
    r"(^\s{0,3}>\s?)|(^\s*[-*+]\s+)|(^\s*\d+[.)]\s+)|`+|(?<!\w)[*_]{1,3}|[*_]{1,3}(?!\w)", re.MULTILINE
)
_STOPWORDS = frozenset(STOPWORDS_EN) | frozenset(
    {"do", "does", "did", "you", "your", "we", "our", "i", "me", "my", "can", "could", "what", "when"}
    | {"how", "which", "who", "whom", "would", "should", "have", "has", "had", "am", "there", "here"}
)


@dataclass(frozen=True, slots=True)
class Passage:
    """A piece of one document, small enough to put in a prompt and large enough to make sense alone."""

    text: str
    source: str = ""
    """The document it came from (its name), for the timeline and debugging."""
    index: int = 0
    """Its position within that document."""

    @property
    def words(self) -> int:
        return len(self.text.split())


def _clean(line: str) -> str:
    """Markdown to plain text a model reads as prose: links keep their label, emphasis marks go."""
    return _MARKUP.sub("", _LINK.sub(r"\1", line)).strip()


def _paragraphs(text: str) -> Iterable[tuple[str | None, str]]:
    """(heading, paragraph) pairs; a markdown heading names the section of the paragraphs after it."""
    heading: str | None = None
    block: list[str] = []
    for raw in [*text.replace("\r\n", "\n").replace("\r", "\n").split("\n"), ""]:
        match = _HEADING.match(raw)
        if match or not raw.strip():
            if block:
                yield heading, " ".join(block)
                block = []
            if match:
                heading = _clean(match.group(1)) or heading
            continue
        cleaned = _clean(raw)
        if cleaned:
            block.append(cleaned)


def _sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph; one longer than ``MAX_WORDS`` is cut into word runs."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        for start in range(0, len(words), MAX_WORDS):
            out.append(" ".join(words[start : start + MAX_WORDS]))
    return [s for s in out if s]


def chunk_text(text: str, source: str = "") -> list[Passage]:
    """Cut a document into passages of about 80–150 words on paragraph and sentence boundaries.

    Short paragraphs are joined (one FAQ answer alone is often too small to match a question's words);
    a passage inside a markdown section starts with the section's title, so "Opening hours" still
    matches when the paragraph itself only lists days."""
    passages: list[str] = []
    current: list[str] = []
    count = 0
    section: str | None = None

    def close() -> None:
        nonlocal current, count
        if current:
            passages.append(" ".join(current))
        current, count = [], 0

    for heading, paragraph in _paragraphs(text):
        if heading != section:
            close()
            section = heading
        for sentence in _sentences(paragraph):
            size = len(sentence.split())
            if current and count + size > MAX_WORDS:
                close()
            if not current and section:
                current.append(f"{section}:")
            current.append(sentence)
            count += size
        if count >= TARGET_WORDS:
            close()
    close()
    return [Passage(body, source, i) for i, body in enumerate(passages)]


def _stem(word: str) -> str:
    """A light English suffix strip, the same for passages and questions ("opens" finds "open")."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith("ing"):
        return word[:-3]
    if len(word) > 4 and word.endswith("ed"):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def terms(text: str) -> list[str]:
    """The words BM25 compares: lower-cased, stop words out, lightly stemmed."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def estimate_tokens(text: str) -> int:
    """About 4/3 tokens per English word: for callers without the model's own tokenizer."""
    return (len(text.split()) * 4 + 2) // 3


class KnowledgeIndex:
    """BM25 over an agent's passages. Build once per agent (its documents change rarely), search per turn."""

    def __init__(self, passages: Sequence[Passage]) -> None:
        self.passages = list(passages)
        self._bm25: bm25s.BM25 | None = None
        if self.passages:
            self._bm25 = bm25s.BM25()
            self._bm25.index([terms(p.text) for p in self.passages], show_progress=False)

    @classmethod
    def from_documents(cls, documents: Iterable[tuple[str, str]]) -> KnowledgeIndex:
        """An index over ``(name, text)`` documents."""
        return cls([p for name, text in documents for p in chunk_text(text, name)])

    def __len__(self) -> int:
        return len(self.passages)

    def search(
        self,
        query: str,
        max_tokens: int,
        count_tokens: Callable[[str], int] = estimate_tokens,
        top_k: int = DEFAULT_TOP_K,
    ) -> list[Passage]:
        """The best-matching passages, best first, as many of the ``top_k`` as fit in ``max_tokens``.

        A question that shares no word with any passage gets nothing: no passage is better than an
        unrelated one a small model would quote anyway."""
        if self._bm25 is None or max_tokens <= 0:
            return []
        wanted = terms(query)
        if not wanted:
            return []
        scores = self._bm25.get_scores(wanted)
        ranked = sorted((i for i in range(len(scores)) if scores[i] > 0), key=lambda i: -float(scores[i]))
        found: list[Passage] = []
        used = 0
        for i in ranked[:top_k]:
            cost = count_tokens(self.passages[i].text)
            if used + cost > max_tokens:
                continue
            found.append(self.passages[i])
            used += cost
        return found
