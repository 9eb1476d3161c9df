"""Provider chains: a primary and its fallbacks per role, each behind a circuit breaker.

A request goes to the first provider whose breaker lets it through. If that provider fails with
``ProviderUnavailable`` *before its first chunk*, the next one is asked the same thing; after the first
chunk nothing is retried elsewhere (the caller would hear the start of the answer twice). A breaker
opens after ``failures`` consecutive failures, so a dead provider is skipped at once instead of costing
every turn its timeout; after ``cooldown_s`` one request probes it (half-open), and a success closes it.
When every breaker is open the last provider is asked anyway: a failing answer is no worse than none.

Breakers belong to provider instances and are shared by every chain and session using them. Each hop
and breaker change goes to the reporter a session binds (``parley.providers.events``) and to the log.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Generic, TypeVar

import numpy as np
import structlog

from parley.audio.frame import PCM16
from parley.audio.resample import Resampler
from parley.providers.asr.base import RecognitionStream, SpeechRecognizer, Transcript
from parley.providers.errors import ProviderUnavailable
from parley.providers.events import ProviderEvent, Reporter
from parley.providers.llm.base import ChatMessage, LanguageModel, LLMChunk, ReadsAhead, ToolSpec
from parley.providers.tts.base import AlignedChunk, AlignedSynthesizer, SpeechSynthesizer
from parley.providers.tts.phrase_cache import WarmsPhrases

log = structlog.get_logger("parley.providers.failover")

E = TypeVar("E")
T = TypeVar("T")

REASON_CHARS = 200


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


Change = tuple[BreakerState, BreakerState]
"""A breaker's state before and after a call on it."""


@dataclass(frozen=True, slots=True)
class Permit:
    """Leave to send one request; ``probe`` when it is the half-open breaker's single trial."""

    probe: bool = False


class CircuitBreaker:
    """Closed → open after ``failures`` consecutive failures → half-open after ``cooldown_s`` (one probe
    at a time) → closed on a success, open again on a failure. Not thread-safe: one event loop."""

    def __init__(
        self,
        failures: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failures < 1 or cooldown_s <= 0:
            raise ValueError("failures must be at least 1 and cooldown_s positive")
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        """Consecutive failures so far."""
        self._opened_at = 0.0
        self._probing = False

    def acquire(self, *, force: bool = False) -> tuple[Permit | None, Change | None]:
        """Leave for one request (None: skip this provider), and the state change deciding made."""
        change: Change | None = None
        if self.state is BreakerState.OPEN and self._clock() - self._opened_at >= self.cooldown_s:
            change = self._to(BreakerState.HALF_OPEN)
        if self.state is BreakerState.CLOSED:
            return Permit(), change
        if self.state is BreakerState.HALF_OPEN and not self._probing:
            self._probing = True
            return Permit(probe=True), change
        return (Permit() if force else None), change

    def succeeded(self, permit: Permit) -> Change | None:
        if permit.probe:
            self._probing = False
        self.failures = 0
        return self._to(BreakerState.CLOSED) if self.state is not BreakerState.CLOSED else None

    def failed(self, permit: Permit) -> Change | None:
        if permit.probe:
            self._probing = False
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures >= self.threshold
        ):
            self._opened_at = self._clock()
            return self._to(BreakerState.OPEN)
        if self.state is BreakerState.OPEN:  # a forced last-resort try failed: the cool-down starts over
            self._opened_at = self._clock()
        return None

    def abandon(self, permit: Permit) -> None:
        """The request ended without telling (cancelled, or refused as a bad request): its probe slot
        is free again."""
        if permit.probe:
            self._probing = False

    def _to(self, state: BreakerState) -> Change:
        change = (self.state, state)
        self.state = state
        return change


@dataclass(frozen=True, slots=True)
class Link(Generic[E]):
    """One provider of a chain: its name (the agent's ``provider``), engine and breaker."""

    name: str
    engine: E
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)


class _Chain(Generic[E]):
    role = ""

    def __init__(self, links: Sequence[Link[E]], report: Reporter | None = None) -> None:
        if not links:
            raise ValueError("a provider chain needs at least one provider")
        self.links = tuple(links)
        self._report = report

    @property
    def primary(self) -> E:
        return self.links[0].engine

    async def _first_answer(self, ask: Callable[[Link[E]], AsyncIterator[T]]) -> AsyncIterator[T]:
        """What the first provider able to answer yields; see the module docstring for the rules."""
        started_at = time.monotonic()
        tried = False
        failure: ProviderUnavailable | None = None
        last = len(self.links) - 1
        for index, link in enumerate(self.links):
            permit, change = link.breaker.acquire(force=index == last and not tried)
            self._breaker(link, change)
            if permit is None:
                if index < last:
                    self._hop(link, index + 1, "circuit open", started_at)
                continue
            tried = True
            answered = False
            settled = False
            stream = ask(link)
            try:
                async for item in stream:
                    if not answered:
                        answered = settled = True
                        self._breaker(link, link.breaker.succeeded(permit))
                    yield item
                if not answered:  # an empty answer is an answer: the provider served the request
                    settled = True
                    self._breaker(link, link.breaker.succeeded(permit))
                return
            except ProviderUnavailable as error:
                settled = True
                self._breaker(link, link.breaker.failed(permit))
                if answered or index == last:
                    raise
                failure = error
                self._hop(link, index + 1, str(error), started_at)
            finally:
                if not settled:
                    link.breaker.abandon(permit)
                await _aclose(stream)
        # Here one provider failed and the rest are open: the last one is forced only when none was asked.
        assert failure is not None
        raise failure

    def _hop(self, gone: Link[E], to: int, reason: str, started_at: float) -> None:
        """Report a hop from ``gone`` to the chain's provider at position ``to``. ``fallback`` says which
        of the role's fallbacks that is (0: the first), as names may repeat: what prices the work
        it serves (``platform/usage.py``)."""
        data = {
            "role": self.role,
            "from": gone.name,
            "to": self.links[to].name,
            "fallback": to - 1,
            "reason": reason[:REASON_CHARS],
            "after_ms": round((time.monotonic() - started_at) * 1000, 1),
        }
        log.warning("provider failover", **data)
        if self._report is not None:
            self._report(ProviderEvent("failover", data))

    def _breaker(self, link: Link[E], change: Change | None) -> None:
        if change is None:
            return
        data = {
            "role": self.role,
            "provider": link.name,
            "previous": str(change[0]),
            "state": str(change[1]),
            "failures": link.breaker.failures,
        }
        log.info("provider circuit breaker", **data)
        if self._report is not None:
            self._report(ProviderEvent("breaker", data))

    async def _warm_all(self, warm: Callable[[E], Any]) -> None:
        """Warm every provider, so a fallback answers as fast as the primary would have. Only the
        primary's failure is the caller's; a fallback that cannot warm up is logged."""
        results = await asyncio.gather(*(warm(link.engine) for link in self.links), return_exceptions=True)
        for link, result in zip(self.links, results, strict=True):
            if isinstance(result, BaseException):
                if link is self.links[0] and not isinstance(result, ProviderUnavailable):
                    raise result
                log.warning("provider warm-up failed", role=self.role, provider=link.name, error=repr(result))


class FailoverLanguageModel(_Chain[LanguageModel]):
    """A ``LanguageModel`` answered by the first of its providers able to."""

    role = "llm"

    def __init__(self, links: Sequence[Link[LanguageModel]], report: Reporter | None = None) -> None:
        super().__init__(links, report)
        self.name = self.primary.name

    def with_reporter(self, report: Reporter) -> FailoverLanguageModel:
        return FailoverLanguageModel(self.links, report)

    def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        tool_choice: str | None = None,
        strict: bool = False,
    ) -> AsyncIterator[LLMChunk]:
        # Only when set: older models still work.
        forced: dict[str, Any] = {"tool_choice": tool_choice, "strict": strict} if tool_choice else {}
        return self._first_answer(
            lambda link: link.engine.stream(
                messages, tools, max_tokens=max_tokens, temperature=temperature, **forced
            )
        )

    def count_tokens(self, text: str) -> int:
        return self.primary.count_tokens(text)

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        await self._warm_all(lambda engine: engine.warm_up(messages, tools))

    async def read_ahead(
        self, messages: list[ChatMessage], tools: list[ToolSpec] | None, opening: str = ""
    ) -> None:
        """The primary reads ahead (``ReadsAhead``): it answers unless it is failing."""
        if isinstance(self.primary, ReadsAhead):
            await self.primary.read_ahead(messages, tools, opening)


class FailoverSynthesizer(_Chain[SpeechSynthesizer]):
    """A ``SpeechSynthesizer`` voiced by the first of its providers able to, at the primary's sample
    rate (a fallback's audio is resampled). Each clause is asked anew, so a clause after a failover may
    come back in the primary's voice once it serves again."""

    role = "tts"

    def __init__(self, links: Sequence[Link[SpeechSynthesizer]], report: Reporter | None = None) -> None:
        super().__init__(links, report)
        self.name = self.primary.name
        self.sample_rate = self.primary.sample_rate

    def with_reporter(self, report: Reporter) -> FailoverSynthesizer:
        return FailoverSynthesizer(self.links, report)

    async def synthesize(self, text: str) -> AsyncIterator[PCM16]:
        pieces = self.synthesize_aligned(text)
        try:
            async for piece in pieces:
                yield piece.pcm
        finally:
            await _aclose(pieces)

    def synthesize_aligned(self, text: str) -> AsyncIterator[AlignedChunk]:
        return self._first_answer(lambda link: self._voice(link.engine, text))

    async def warm(self, phrases: Iterable[str]) -> None:
        """Say ``phrases`` ahead in the primary's voice (its phrase cache)."""
        if isinstance(self.primary, WarmsPhrases):
            await self.primary.warm(phrases)

    async def warm_up(self) -> None:
        await self._warm_all(lambda engine: engine.warm_up())

    async def _voice(self, voice: SpeechSynthesizer, text: str) -> AsyncIterator[AlignedChunk]:
        resampler = (
            Resampler(voice.sample_rate, self.sample_rate) if voice.sample_rate != self.sample_rate else None
        )
        source: AsyncIterator[AlignedChunk] = (
            voice.synthesize_aligned(text) if isinstance(voice, AlignedSynthesizer) else _plain(voice, text)
        )
        try:
            async for piece in source:
                if resampler is None:
                    yield piece
                    continue
                pcm = resampler.process(piece.pcm)
                if len(pcm) or piece.chars:
                    yield AlignedChunk(pcm, piece.chars)
            if resampler is not None:
                rest = resampler.flush()
                if len(rest):
                    yield AlignedChunk(rest)
        finally:
            await _aclose(source)


class FailoverRecognizer(_Chain[SpeechRecognizer]):
    """A ``SpeechRecognizer`` whose streams move to the next provider when theirs fails: the audio of
    the utterance so far is kept (bounded) and pushed again into the new stream, so no words are lost."""

    role = "asr"

    def __init__(
        self,
        links: Sequence[Link[SpeechRecognizer]],
        report: Reporter | None = None,
        *,
        max_replay_s: float = 60.0,
    ) -> None:
        super().__init__(links, report)
        self.name = self.primary.name
        self.sample_rate = self.primary.sample_rate
        self.max_replay_s = max_replay_s

    def with_reporter(self, report: Reporter) -> FailoverRecognizer:
        return FailoverRecognizer(self.links, report, max_replay_s=self.max_replay_s)

    def open_stream(self, vocabulary: Sequence[str] = ()) -> RecognitionStream:
        return _FailoverStream(self, tuple(vocabulary))

    async def warm_up(self) -> None:
        await self._warm_all(lambda engine: engine.warm_up())


class _FailoverStream:
    """Recognition over a recogniser chain. Each operation goes to the current provider's stream; on
    ``ProviderUnavailable`` the chain moves on (through the breakers, as for the other roles), the
    utterance's audio so far is pushed into the next provider's stream and the operation repeats. The
    next utterance starts again from the first provider its breaker lets through."""

    def __init__(self, chain: FailoverRecognizer, vocabulary: tuple[str, ...]) -> None:
        self._chain = chain
        self._vocabulary = vocabulary
        self._audio: list[PCM16] = []
        self._samples = 0
        self._max_samples = int(chain.max_replay_s * chain.sample_rate)
        self._index = -1
        self._permit: Permit | None = None
        self._served = False
        self._stream: RecognitionStream | None = None
        self._resampler: Resampler | None = None

    async def push(self, pcm: PCM16) -> None:
        await self._do(lambda stream: stream.push(self._in_rate(pcm)))
        self._audio.append(pcm)  # kept after it went in: a failover replays it, the push does not repeat
        self._samples += len(pcm)
        while self._samples > self._max_samples and len(self._audio) > 1:
            self._samples -= len(self._audio.pop(0))

    async def interim(self) -> Transcript:
        result: Transcript = await self._do(lambda stream: stream.interim())
        return result

    async def finalize(self) -> Transcript:
        result: Transcript = await self._do(lambda stream: stream.finalize())
        self._audio.clear()
        self._samples = 0
        if self._index > 0:  # on a fallback: the next utterance asks the primary's breaker again
            await self._release()
            self._index = -1
        return result

    async def aclose(self) -> None:
        await self._release()

    async def _release(self) -> None:
        stream, self._stream = self._stream, None
        if self._permit is not None and not self._served:
            self._chain.links[self._index].breaker.abandon(self._permit)
        self._permit = None
        if stream is not None:
            await stream.aclose()

    def _in_rate(self, pcm: PCM16) -> PCM16:
        return self._resampler.process(pcm) if self._resampler is not None else pcm

    async def _do(self, operation: Callable[[RecognitionStream], Any]) -> Any:
        chain = self._chain
        started_at = time.monotonic()
        while True:
            fresh = self._stream is None
            if fresh:
                await self._open_next(started_at)
            assert self._stream is not None and self._permit is not None
            link = chain.links[self._index]
            try:
                if fresh and self._audio:  # the utterance so far, into a stream that has not heard it
                    await self._stream.push(self._in_rate(np.concatenate(self._audio)))
                result = await operation(self._stream)
            except ProviderUnavailable as error:
                chain._breaker(link, link.breaker.failed(self._permit))
                stream, self._stream, self._permit = self._stream, None, None
                await _close_quietly(stream)
                if self._index == len(chain.links) - 1:
                    self._index = -1  # the next utterance starts over from the primary
                    raise
                chain._hop(link, self._index + 1, str(error), started_at)
                continue
            if not self._served:
                self._served = True  # one success per stream is enough for the breaker
                chain._breaker(link, link.breaker.succeeded(self._permit))
            return result

    async def _open_next(self, started_at: float) -> None:
        """Open the next provider the breakers let through (the last one regardless)."""
        chain = self._chain
        last = len(chain.links) - 1
        while self._stream is None:
            self._index = min(self._index + 1, last)
            link = chain.links[self._index]
            permit, change = link.breaker.acquire(force=self._index == last)
            chain._breaker(link, change)
            if permit is None:
                chain._hop(link, self._index + 1, "circuit open", started_at)
                continue
            engine = link.engine
            self._permit, self._served = permit, False
            self._resampler = (
                Resampler(chain.sample_rate, engine.sample_rate)
                if engine.sample_rate != chain.sample_rate
                else None
            )
            self._stream = engine.open_stream(self._vocabulary)


async def _plain(voice: SpeechSynthesizer, text: str) -> AsyncIterator[AlignedChunk]:
    stream = voice.synthesize(text)
    try:
        async for pcm in stream:
            yield AlignedChunk(pcm)
    finally:
        await _aclose(stream)


async def _close_quietly(stream: RecognitionStream | None) -> None:
    if stream is None:
        return
    try:
        await stream.aclose()
    except Exception as error:  # the provider already failed; its stream's close is only news
        log.warning("closing a failed recognition stream failed", error=repr(error))


async def _aclose(stream: AsyncIterator[Any]) -> None:
    close = getattr(stream, "aclose", None)  # an async generator: stop it now, not at GC
    if close is not None:
        await close()
