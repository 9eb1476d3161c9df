"""An agent's documents, cut into passages and searched with BM25, so each turn gets the few that matter.

Pure: text in, passages out. Extraction (PDF), storage and upload limits live in the platform; the
session only asks ``search(question, max_tokens)`` once per turn. Retrieval is lexical (``bm25s``), so it
runs offline, in microseconds per query, and needs no model. Text in a script written without spaces
(Chinese, Japanese) is compared by overlapping pairs of characters, the usual dictionary-free way.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import bm25s  # type: ignore[import-untyped]
from bm25s.stopwords import STOPWORDS_EN  # type: ignore[import-untyped]

TARGET_WORDS = 80
"""A passage closes at the end of a paragraph once it has this many words."""
MAX_WORDS = 150
"""…and never grows past this many (a longer sentence is cut at word boundaries). In a script written
without spaces (Chinese, Japanese, Thai) each character counts as a word: 150 of them are about as many
tokens as 150 English words, where the whole run between two spaces would be one "word"."""
MAX_CHARS = 1200
"""…nor past this many characters: 300 tokens at 4 characters a token (a remote model's estimate), the
whole retrieval budget of an agent with the default context (``min(400, context_token_budget / 4)``), so
a passage of any text (a long URL, a table without spaces) can be given to the model. English prose
reaches 150 words first."""
MAX_HEADING = 100
"""A section title longer than this is shortened where it starts a passage (it counts in MAX_CHARS)."""
DEFAULT_TOP_K = 4


def _range(first: int, last: int) -> str:
    return f"{chr(first)}-{chr(last)}"


_HAN = _range(0x3005, 0x3007) + _range(0x3400, 0x4DBF) + _range(0x4E00, 0x9FFF) + _range(0xF900, 0xFAFF)
_HAN += _range(0x20000, 0x3134F)
_HIRAGANA = _range(0x3041, 0x309F)
_KATAKANA = _range(0x30A1, 0x30FA) + _range(0x30FC, 0x30FF) + _range(0x31F0, 0x31FF) + _range(0xFF66, 0xFF9F)
_HANGUL = _range(0x1100, 0x11FF) + _range(0x3131, 0x318E) + _range(0xAC00, 0xD7A3)
_SOUTHEAST_ASIAN = _range(0x0E01, 0x0E5B) + _range(0x0E81, 0x0EDF) + _range(0x1000, 0x109F)
_SOUTHEAST_ASIAN += _range(0x1780, 0x17FF)
"""Thai, Lao, Myanmar and Khmer: written without spaces between words, like Chinese."""
_CJK_PUNCTUATION = _range(0x3001, 0x303F) + _range(0xFE30, 0xFE4F) + _range(0xFF01, 0xFF65)
_UNSPACED = _HAN + _HIRAGANA + _KATAKANA + _SOUTHEAST_ASIAN + _CJK_PUNCTUATION
"""Scripts written without spaces between words (and their punctuation): each character is a unit of size."""
_MARKS = "".join(
    chr(c)
    for c in range(0x10000)
    if unicodedata.category(chr(c)).startswith("M") and not 0xD800 <= c < 0xE000
)
"""Combining marks, which ``\\w`` misses: without them a Hindi word breaks at each vowel sign."""

_UNIT = re.compile(rf"[{_UNSPACED}]|[^\s{_UNSPACED}]+")
_UNSPACED_CHAR = re.compile(rf"[{_UNSPACED}]")
_ASCII_WORD = re.compile(r"\w+")
_LETTERS = rf"[^\W{_HAN}{_HIRAGANA}{_KATAKANA}{_HANGUL}{_SOUTHEAST_ASIAN}]"
_TERM = re.compile(
    rf"(?P<han>[{_HAN}]+)|(?P<katakana>[{_KATAKANA}]+)|(?P<hangul>[{_HANGUL}]+)"
    rf"|(?P<southeast_asian>[{_SOUTHEAST_ASIAN}]+)|(?P<hiragana>[{_HIRAGANA}]+)"
    rf"|(?P<word>{_LETTERS}+(?:[{_MARKS}]+{_LETTERS}*)*)"
)
_HAN_STOPWORDS = re.compile(
    "什么|怎么|怎样|如何|多少|哪里|哪儿|哪些|可以|请问|是否|我们|你们|您们|[吗呢吧啊呀嘛的我你您何]"
)
"""Question words, pronouns and particles: what the English stop words are to a Chinese (or Japanese)
question, so "洗牙多少钱" does not also find every other answer that has a price."""
_SENTENCE_END = re.compile(
    r"(?<=[.!?;:])\s+"
    rf"|(?<=[!?])(?=[{_UNSPACED}])"
    r"|(?<=[。！？｡；])(?![」』）〕】｣”’。！？｡；])\s*"
    r"|(?<=[。！？｡][」』）〕】｣”’])\s*"
)
"""After ``.!?;:`` and a space; after the full-width ``。！？；``, which no space follows (a closing quote
or bracket stays with its sentence)."""
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
        """Its size in words, a character of Chinese or Japanese counting as one."""
        return _units(self.text)


def _units(text: str) -> int:
    """Words, each character of a script written without spaces being one: the same as
    ``len(text.split())`` for English."""
    return len(text.split()) if text.isascii() else len(_UNIT.findall(text))


def _join(parts: Iterable[str]) -> str:
    """Parts joined by a space, except between two characters of a script written without spaces."""
    out = ""
    for part in parts:
        if out and part and not (_UNSPACED_CHAR.match(out[-1]) and _UNSPACED_CHAR.match(part[0])):
            out += " "
        out += part
    return out


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
                yield heading, _join(block)
                block = []
            if match:
                heading = _clean(match.group(1)) or heading
            continue
        cleaned = _clean(raw)
        if cleaned:
            block.append(cleaned)


def _spans(sentence: str, room: int) -> Iterator[tuple[int, int]]:
    """Where the sentence's units are; one longer than ``room`` characters is cut into pieces of it."""
    for match in _UNIT.finditer(sentence):
        for start in range(match.start(), match.end(), room):
            yield start, min(start + room, match.end())


def _sentences(paragraph: str, room: int = MAX_CHARS) -> list[str]:
    """Sentences of a paragraph; one longer than ``MAX_WORDS`` words or ``room`` characters is cut
    into runs of words."""
    out: list[str] = []
    for sentence in _SENTENCE_END.split(" ".join(paragraph.split())):
        if len(sentence) <= room and _units(sentence) <= MAX_WORDS:
            out.append(sentence)
            continue
        start = end = units = 0
        for first, last in _spans(sentence, room):
            if units and (units == MAX_WORDS or last - start > room):
                out.append(sentence[start:end])
                units = 0
            if not units:
                start = first
            end, units = last, units + 1
        if units:
            out.append(sentence[start:end])
    return [s for s in (s.strip() for s in out) if s]


def _shortened(title: str) -> str:
    """A section title as it starts a passage: a "heading" of hundreds of characters (a comment line in
    pasted code) would leave no room in the passage."""
    return title if len(title) <= MAX_HEADING else title[: MAX_HEADING - 1] + "…"


def chunk_text(text: str, source: str = "") -> list[Passage]:
    """Cut a document into passages of about 80–150 words on paragraph and sentence boundaries.

    Short paragraphs are joined (one FAQ answer alone is often too small to match a question's words);
    a passage inside a markdown section starts with the section's title, so "Opening hours" still
    matches when the paragraph itself only lists days. No passage has more than ``MAX_CHARS``
    characters."""
    passages: list[str] = []
    current: list[str] = []
    count = chars = 0
    section: str | None = None

    def close() -> None:
        nonlocal current, count, chars
        if current:
            passages.append(_join(current))
        current, count, chars = [], 0, 0

    for heading, paragraph in _paragraphs(text):
        if heading != section:
            close()
            section = heading
        prefix = f"{_shortened(section)}:" if section else ""
        for sentence in _sentences(paragraph, MAX_CHARS - len(prefix) - 1 if prefix else MAX_CHARS):
            size = _units(sentence)
            if current and (count + size > MAX_WORDS or chars + 1 + len(sentence) > MAX_CHARS):
                close()
            if not current and prefix:
                current.append(prefix)
                chars = len(prefix)
            chars += len(sentence) + (1 if current else 0)
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


def _bigrams(run: str) -> list[str]:
    """Overlapping pairs of characters, the usual BM25 terms for text without spaces ("洗牙费用" → 洗牙, 牙费,
    费用): no dictionary needed, and a question shares the pairs of the words it shares with a passage.
    A single character stands for itself."""
    return [run] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)]


def terms(text: str) -> list[str]:
    """The words BM25 compares: lower-cased, stop words out, lightly stemmed; in Chinese, Japanese,
    Korean and the Southeast Asian scripts, pairs of characters of each run of one script.

    Japanese hiragana is left out: between kanji and katakana (which carry the meaning) it is particles
    and endings ("の", "は", "ですか"), which every passage has."""
    if text.isascii():  # most English passages: the same terms, three times faster
        return [_stem(w) for w in _ASCII_WORD.findall(text.lower()) if w not in _STOPWORDS]
    found: list[str] = []
    for match in _TERM.finditer(unicodedata.normalize("NFKC", text).lower()):
        run, script = match.group(), match.lastgroup
        if script == "word":
            if run not in _STOPWORDS:
                found.append(_stem(run))
        elif script == "han":
            found.extend(term for piece in _HAN_STOPWORDS.split(run) if piece for term in _bigrams(piece))
        elif script != "hiragana":
            found.extend(_bigrams(run))
    return found


def estimate_tokens(text: str) -> int:
    """About 4/3 tokens per English word (or character of Chinese or Japanese): for callers without the
    model's own tokenizer."""
    return (_units(text) * 4 + 2) // 3


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
