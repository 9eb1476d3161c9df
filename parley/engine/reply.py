"""One agent reply — think (``engine/thinking.py``), synthesize, play — inside a single cancellation scope.

Barge-in cancels the reply's task and with it the LLM stream, pending tool decisions, TTS and queued
audio in one move. The play loop owns the playout clock, so the reply always knows which words the
listener actually heard.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import structlog

from parley.audio.frame import PCM16, AudioFrame
from parley.audio.resample import Resampler
from parley.engine.context import ConversationContext
from parley.engine.events import EventType, now
from parley.engine.grounding import GroundingCheck
from parley.engine.thinking import Thinker
from parley.engine.tool_requests import ToolRequests
from parley.engine.tools import ToolRegistry
from parley.engine.transport import AudioOutput
from parley.providers.events import ProviderEvent, Reporter, bind_reporter
from parley.providers.llm.base import ChatMessage, LanguageModel, Usage
from parley.providers.tts.base import AlignedSynthesizer, CharTiming, SpeechSynthesizer, played_text

log = structlog.get_logger("parley.engine.reply")
Emit = Callable[..., None]
_reply_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ReplySettings:
    max_tokens: int = 60
    temperature: float = 0.0
    max_tool_rounds: int = 3
    frame_ms: int = 20
    lead_s: float = 0.0
    """How far ahead of play time frames are written (network transports want some slack)."""
    underrun_tolerance_s: float = 0.03
    error_message: str = ""
    """Spoken when the language model fails, so the caller is not left in silence."""
    unknown_answer: str = ""
    """Spoken instead of the model's words when a grounded agent is asked about what it does not know."""
    detail_question: str | None = None
    """Asked when the model called a tool with a required detail (a name, a day) the caller never gave;
    ``{detail}`` is what is asked for ("your name", "the day")."""
    goodbye_message: str | None = None
    """Spoken when the agent hangs up, instead of asking the model for words: after its closing tool a
    small model copies its last answer ("Done: you're booked for Friday. Anything else?")."""


@dataclass(slots=True)
class ReplyDeps:
    llm: LanguageModel
    tts: SpeechSynthesizer
    tools: ToolRegistry
    context: ConversationContext
    output: AudioOutput
    emit: Emit
    settings: ReplySettings
    on_audio_started: Callable[[Reply], None]
    grounding: GroundingCheck | None = None
    requests: ToolRequests | None = None
    """Tools a caller's request is matched to (``engine/tool_requests.py``); None: the model decides."""


@dataclass(frozen=True, slots=True)
class _Frame:
    pcm: PCM16
    segment: int


@dataclass(frozen=True, slots=True)
class _SegmentEnd:
    segment: int


_END = object()


@dataclass(frozen=True, slots=True)
class _Mark:
    segment: int
    at: float
    position: int


@dataclass(slots=True)
class _Written:
    segment: int
    start: float
    pcm: PCM16

    @property
    def samples(self) -> int:
        return len(self.pcm)


@dataclass(slots=True)
class ReplyOutcome:
    heard_text: str
    interrupted: bool
    messages: list[ChatMessage] = field(default_factory=list)


class Reply:
    """An agent reply to ``user_message`` (or a fixed ``canned_text`` such as the first message)."""

    def __init__(
        self, deps: ReplyDeps, user_message: ChatMessage | None = None, canned_text: str | None = None
    ) -> None:
        self.id = f"r{next(_reply_ids)}"
        self.deps = deps
        self.user_message = user_message
        self.canned_text = canned_text
        self.committed = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()
        self.end_after: str | None = None
        """End the session with this reason once the reply was heard (``end_call``, a voicemail)."""
        self.speech_end: float | None = None
        """When the user stopped speaking before this reply (for voice-to-voice latency)."""
        self.first_audio_at: float | None = None
        self.audio_done_at: float | None = None
        self.paused_at: float | None = None
        self.segments: list[str] = []
        self.segment_samples: list[int] = []
        self._timings: dict[int, list[CharTiming]] = {}
        """Per clause, when each character sounds (from a voice that says so: ``AlignedSynthesizer``)."""
        self._segment_queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()
        self._audio: asyncio.Queue[Any] = asyncio.Queue(maxsize=int(30_000 / deps.settings.frame_ms))
        self._written: list[_Written] = []
        self._replay: list[_Frame] = []
        self._marks: list[_Mark] = []
        """When each clause will have been heard, and after how many written frames it ends."""
        self._unannounced: list[tuple[str, float]] = []
        self._played = asyncio.Condition()
        self._thinking: asyncio.Task[None] | None = None
        self._voiced_any = False
        self._voice_failed_at: int | None = None
        """The clause the voice (TTS) failed on: it and every clause after it were never said …"""
        self._apology: int | None = None
        """… except the error message said in their place (when nothing had been said yet)."""
        self.task: asyncio.Task[None] | None = None
        # The model's failovers name this reply, so its tokens are priced at the model that served them.
        thinking = dataclasses.replace(deps, llm=bind_reporter(deps.llm, self._reporter()))
        self.thinker = Thinker(self.id, thinking, user_message, self)
        """What the reply says and does (``engine/thinking.py``); this class voices and plays it."""

    # --- control, called by the session -------------------------------------------------------------

    def start(self) -> asyncio.Task[None]:
        self.task = asyncio.create_task(self._run(), name=f"reply-{self.id}")
        return self.task

    def commit(self) -> None:
        """The turn really ended: audio may now play, side effects may fire, and text is announced."""
        self.committed.set()
        for index, (text, ready_at) in enumerate(self._unannounced):
            if self._said(index):  # a clause the voice failed on while speculating is never announced
                self.deps.emit(
                    EventType.AGENT_TEXT, reply_id=self.id, segment=index, text=text, ready_at=ready_at
                )
        self._unannounced.clear()

    def pause(self) -> None:
        if self.gate.is_set():
            self.gate.clear()
            self.paused_at = now()

    def resume(self) -> None:
        self.paused_at = None
        self.gate.set()

    @property
    def usage(self) -> Usage:
        return self.thinker.usage

    @property
    def playing(self) -> bool:
        return self.first_audio_at is not None and self.audio_done_at is None

    def outcome(self, stopped_at: float | None = None) -> ReplyOutcome:
        """What the listener heard, up to ``stopped_at`` (default: when the reply was paused)."""
        cut = stopped_at if stopped_at is not None else self.paused_at
        if cut is None or self.audio_done_at is not None:
            text = " ".join(s for i, s in enumerate(self.segments) if self._said(i))
            return ReplyOutcome(text, False, self.thinker.context_messages(text))
        heard = self._heard_text(cut)
        return ReplyOutcome(heard, True, self.thinker.context_messages(heard))

    # --- the three loops ----------------------------------------------------------------------------

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            self._thinking = group.create_task(self._think())
            group.create_task(self._synthesize())
            group.create_task(self._play())

    async def _think(self) -> None:
        if self.canned_text is not None:
            self.thinker.say_line(self.canned_text)
        else:
            await self.thinker.run()
        await self._segment_queue.put(None)

    async def _synthesize(self) -> None:
        while (item := await self._segment_queue.get()) is not None:
            index, text = item
            try:
                await self._voice(index, text)
            except Exception as exc:  # a broken voice: what was said stands, the rest is never said
                await self._on_voice_failed(index, exc)
                break
        await self._audio.put(_END)

    async def _voice(self, index: int, text: str) -> None:
        """Synthesize one clause into frames for the play loop, then mark the clause's end."""
        out_rate = self.deps.output.sample_rate
        frame_samples = out_rate * self.deps.settings.frame_ms // 1000
        resampler = Resampler(self.deps.tts.sample_rate, out_rate)
        pending = np.zeros(0, dtype=np.int16)
        started = now()
        chunks = self._chunks(index, text)
        try:
            async for chunk in chunks:
                if not self._voiced_any and len(chunk):
                    self._voiced_any = True
                    self.deps.emit(
                        EventType.TTS_FIRST_BYTE,
                        reply_id=self.id,
                        latency_ms=round((now() - started) * 1000, 1),
                        text=text,
                    )
                pending = np.concatenate([pending, resampler.process(chunk)])
                pending = await self._queue_frames(pending, index, frame_samples)
        finally:  # cancelled mid-clause: the voice stops now (a remote one closes its socket), not at GC
            await chunks.aclose()
        rest = await self._queue_frames(np.concatenate([pending, resampler.flush()]), index, frame_samples)
        if len(rest):  # the clause's last, shorter frame
            await self._audio.put(_Frame(rest, index))
            self.segment_samples[index] += len(rest)
        await self._audio.put(_SegmentEnd(index))

    async def _chunks(self, index: int, text: str) -> AsyncGenerator[PCM16, None]:
        """The clause's audio from the voice; an aligned voice's character timings are kept, so a cut
        in this clause keeps exactly the characters heard."""
        tts = bind_reporter(self.deps.tts, self._reporter(index))
        if isinstance(tts, AlignedSynthesizer):
            aligned = tts.synthesize_aligned(text)
            try:
                async for piece in aligned:
                    if piece.chars:
                        self._timings.setdefault(index, []).extend(piece.chars)
                    yield piece.pcm
            finally:
                await _aclose(aligned)
            return
        plain = tts.synthesize(text)
        try:
            async for chunk in plain:
                yield chunk
        finally:
            await _aclose(plain)

    async def _on_voice_failed(self, index: int, exc: Exception) -> None:
        """The voice failed on clause ``index``: the reply stops thinking (nothing more can be said, and no
        side effect should follow words never heard). If no clause had been said, the agent's error
        message is tried, so the caller is not left in silence."""
        self._voice_failed_at = index
        log.warning("speech synthesis failed", reply_id=self.id, segment=index, error=repr(exc))
        self.deps.emit(
            EventType.ERROR, where="tts", stage="tts", reply_id=self.id, segment=index, error=repr(exc)
        )
        if self._thinking is not None:
            self._thinking.cancel()
        message = self.deps.settings.error_message
        if not message or any(self.segment_samples[:index]):
            return
        apology = self._apology = len(self.segments)
        self.add_segment(message)
        try:
            await self._voice(apology, message)
        except Exception as again:  # the voice is down: the timeline says so, there is nothing to play
            self._apology = None
            log.warning("speaking the error message failed", reply_id=self.id, error=repr(again))
            self.deps.emit(
                EventType.ERROR,
                where="tts",
                stage="tts",
                reply_id=self.id,
                segment=apology,
                error=repr(again),
            )

    def _reporter(self, segment: int | None = None) -> Reporter:
        """Where a provider chain reports while it serves this reply (in place of the session's
        reporter, to the same timeline): each hop names the reply and, for the voice, the clause."""

        def report(event: ProviderEvent) -> None:
            if event.kind != "failover":
                self.deps.emit(EventType.PROVIDER_BREAKER, **event.data)
                return
            served = {"reply_id": self.id} if segment is None else {"reply_id": self.id, "segment": segment}
            self.deps.emit(EventType.PROVIDER_FAILOVER, **event.data, **served)

        return report

    def _said(self, segment: int) -> bool:
        """Whether the clause was voiced (not lost to a TTS failure)."""
        failed = self._voice_failed_at
        return failed is None or segment < failed or segment == self._apology

    async def _queue_frames(self, pcm: PCM16, segment: int, frame_samples: int) -> PCM16:
        whole = len(pcm) // frame_samples * frame_samples
        for offset in range(0, whole, frame_samples):
            await self._audio.put(_Frame(pcm[offset : offset + frame_samples], segment))
        self.segment_samples[segment] += whole
        return pcm[whole:]

    async def _play(self) -> None:
        await self.committed.wait()
        settings, output = self.deps.settings, self.deps.output
        rate = output.sample_rate
        next_t: float | None = None
        while True:
            item = self._replay.pop(0) if self._replay else await self._audio.get()
            if item is _END:
                break
            if not self.gate.is_set():
                next_t = await self._park(item)
                continue
            if isinstance(item, _SegmentEnd):
                # Note when the clause will have been heard, and go straight on to the next one so its
                # first frames keep their lead; side effects wait on the clock (``wait_until_heard``).
                at = next_t if next_t is not None else now()
                async with self._played:
                    self._marks.append(_Mark(item.segment, at, len(self._written)))
                    self._played.notify_all()
                # On the timeline too: if the process dies mid-reply, recovery knows what was heard.
                self.deps.emit(
                    EventType.AGENT_AUDIO_PLAYED,
                    reply_id=self.id,
                    segment=item.segment,
                    at=at,
                    heard_text=self._heard_text(at),
                )
                continue
            t = now()
            if next_t is None:
                next_t = t
            elif t > next_t + settings.underrun_tolerance_s:
                self.deps.emit(
                    EventType.AUDIO_UNDERRUN, reply_id=self.id, gap_ms=round((t - next_t) * 1000, 1)
                )
                next_t = t
            await _sleep_until(next_t - settings.lead_s)
            if not self.gate.is_set():
                next_t = await self._park(item)
                continue
            if self.first_audio_at is None:
                self.first_audio_at = next_t
                self.deps.on_audio_started(self)
            await output.write(AudioFrame(item.pcm, rate, next_t))
            self._written.append(_Written(item.segment, next_t, item.pcm))
            next_t += len(item.pcm) / rate
        if next_t is not None:
            await _sleep_until(next_t)
        self.audio_done_at = next_t if next_t is not None else now()

    async def _park(self, item: Any) -> float:
        """Wait out a pause. What was written past the pause point (frames, and the clause ends among
        them), then ``item``, is replayed first, in order."""
        cut = self.paused_at if self.paused_at is not None else now()
        first = next((i for i, w in enumerate(self._written) if w.start >= cut), len(self._written))
        unplayed_marks = [m for m in self._marks if m.at > cut]
        replay: list[Any] = []
        for position in range(first, len(self._written) + 1):
            replay.extend(_SegmentEnd(m.segment) for m in unplayed_marks if m.position == position)
            if position < len(self._written):
                written = self._written[position]
                replay.append(_Frame(written.pcm, written.segment))
        del self._written[first:]
        self._marks = [m for m in self._marks if m.at <= cut]
        self._replay[:0] = [*replay, item]
        await self.gate.wait()
        return now()

    async def wait_until_heard(self) -> None:
        """Block a side-effect tool until everything said before it has been played out."""
        await self.committed.wait()
        target = len(self.segments) - 1
        if target < 0:
            return
        while True:
            async with self._played:
                await self._played.wait_for(lambda: self._clause_end(target) is not None)
            end = self._clause_end(target)
            assert end is not None
            await _sleep_until(end)
            if self.gate.is_set() and self._clause_end(target) == end:
                return
            await self.gate.wait()  # paused before the end: it will be played (and marked) again

    def _clause_end(self, segment: int) -> float | None:
        return next((m.at for m in self._marks if m.segment == segment), None)

    # --- bookkeeping --------------------------------------------------------------------------------

    def add_segment(self, text: str) -> None:
        index = len(self.segments)
        self.segments.append(text)
        self.segment_samples.append(0)
        if not self.committed.is_set():  # a speculative reply stays private until its turn is committed
            self._unannounced.append((text, now()))
        elif self._said(index):  # once the voice failed, later clauses are never said: not announced
            self.deps.emit(EventType.AGENT_TEXT, reply_id=self.id, segment=index, text=text, ready_at=now())
        self._segment_queue.put_nowait((index, text))

    def _heard_text(self, cut: float) -> str:
        rate = self.deps.output.sample_rate
        heard = [0] * len(self.segments)
        for w in self._written:
            if w.start < cut:
                heard[w.segment] += min(w.samples, round((cut - w.start) * rate))
        words: list[str] = []
        for index, text in enumerate(self.segments):
            if not self._said(index):  # a clause the voice failed on: a fragment at most, not its words
                continue
            total = self.segment_samples[index]
            if heard[index] <= 0 or total <= 0:
                break
            if heard[index] >= total:
                words.extend(text.split())
                continue
            timings = self._timings.get(index)
            if timings:  # the voice said when each character sounds: keep exactly those heard
                words.extend(played_text(timings, heard[index] / rate).split())
                break
            segment_words = text.split()
            words.extend(segment_words[: int(len(segment_words) * heard[index] / total)])
            break
        return " ".join(words)


async def _sleep_until(deadline: float) -> None:
    delay = deadline - now()
    if delay > 0:
        await asyncio.sleep(delay)


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)  # an async generator: stop it now, not at GC
    if close is not None:
        await close()
