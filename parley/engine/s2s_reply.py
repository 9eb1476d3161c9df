"""One agent reply of a speech-to-speech call, as a record: its audio items, what of them was played
when, and so what the caller heard when it was cut off.

The provider generates faster than the caller listens; only the playout clock knows how far the caller
got. Keeping that here, apart from the session's control flow, lets a barge-in ask one question —
``heard(cut)`` — and get the words for the history and the position to truncate the provider's item at.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

from parley.engine.chunker import ClauseChunker
from parley.providers.s2s.base import S2SUsage

__all__ = ["AudioItem", "PlayedFrame", "S2SReply"]

_reply_ids = itertools.count(1)


@dataclass(slots=True)
class PlayedFrame:
    """A stretch of an item's audio written to the output: when it was due to play, and how long."""

    start: float
    samples: int


@dataclass(slots=True)
class AudioItem:
    """One audio item of a response (OpenAI's ``item_id``): its words and what of it was played."""

    id: str
    transcript: str = ""
    received: int = 0
    """Samples received, at the output rate."""
    written: list[PlayedFrame] = field(default_factory=list)

    def heard_samples(self, cut: float, rate: int) -> int:
        return sum(min(w.samples, max(0, round((cut - w.start) * rate))) for w in self.written)

    def heard_text(self, cut: float, rate: int, complete: bool) -> str:
        """The words heard by ``cut``: all of them once the whole item played, else its played share."""
        words = self.transcript.split()
        if not words or not self.received:
            return ""
        heard = self.heard_samples(cut, rate)
        if heard >= self.received and complete:
            return " ".join(words)
        return " ".join(words[: int(len(words) * min(1.0, heard / self.received))])


@dataclass(slots=True)
class S2SReply:
    """Parley's reply: one provider response, or several when tool results continue it (as one pipeline
    reply holds its tool rounds); its audio, words, tool calls and cost."""

    response_ids: list[str]
    id: str = field(default_factory=lambda: f"s{next(_reply_ids)}")
    speech_end: float | None = None
    items: dict[str, AudioItem] = field(default_factory=dict)
    chunker: ClauseChunker = field(default_factory=ClauseChunker)
    segments: int = 0
    first_audio_at: float | None = None
    audio_done_at: float | None = None
    done: bool = False
    """The provider finished the response (``ResponseDone``)."""
    awaiting_tools: bool = False
    """The latest response called tools: the response their results start continues this reply."""
    usage: S2SUsage = field(default_factory=S2SUsage)
    """Running totals over the reply's responses."""
    tools: set[asyncio.Task[None]] = field(default_factory=set)
    end_after: str | None = None
    queued: int = 0
    """Frames of this reply waiting in the play queue."""
    drained: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while none of its frames wait to be played."""

    @property
    def response_id(self) -> str:
        return self.response_ids[-1]

    def item(self, item_id: str) -> AudioItem:
        if item_id not in self.items:
            self.items[item_id] = AudioItem(item_id)
        return self.items[item_id]

    def count_queued(self, frames: int) -> None:
        """``frames`` more (or, negative, fewer) of its frames wait to be played; ``drained`` follows."""
        self.queued += frames
        if self.queued > 0:
            self.drained.clear()
        else:
            self.drained.set()

    def add_usage(self, usage: S2SUsage) -> S2SUsage:
        """Count one response's usage into the reply's; the running total."""
        a = self.usage
        self.usage = S2SUsage(
            a.input_tokens + usage.input_tokens,
            a.output_tokens + usage.output_tokens,
            a.input_audio_tokens + usage.input_audio_tokens,
            a.output_audio_tokens + usage.output_audio_tokens,
            a.cached_tokens + usage.cached_tokens,
        )
        return self.usage

    def played_until(self, rate: int) -> float | None:
        """When the last audio written so far ends playing; ``None`` when none was written."""
        written = [w for item in self.items.values() for w in item.written]
        if not written:
            return None
        return max(w.start + w.samples / rate for w in written)

    def heard(self, cut: float, rate: int) -> tuple[str, AudioItem | None, int]:
        """What was heard by ``cut``: the words, the item being played then, and how far into it (ms)."""
        words: list[str] = []
        current: AudioItem | None = None
        heard_ms = 0
        for item in self.items.values():
            samples = item.heard_samples(cut, rate)
            if samples <= 0:
                if current is None:
                    current = item
                break
            text = item.heard_text(cut, rate, complete=self.done)
            if text:
                words.append(text)
            current, heard_ms = item, round(samples * 1000 / rate)
        return " ".join(words), current, heard_ms

    def full_text(self) -> str:
        return " ".join(i.transcript.strip() for i in self.items.values() if i.transcript.strip())
