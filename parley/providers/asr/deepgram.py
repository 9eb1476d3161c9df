"""Deepgram live transcription over its WebSocket (``/v1/listen``), behind the pull-style stream.

The session pushes a turn's audio as it is spoken and asks for an interim guess now and then and for the
final transcript at each pause. Here that maps onto one Deepgram socket per stream:

- ``push`` queues the audio for a sender task (bounded in seconds: when the network stalls the oldest
  audio is dropped, never the session), which also sends ``{"type": "KeepAlive"}`` every few seconds
  while nothing else goes out, since Deepgram closes a socket that is silent for 10 s (NET-0001);
- ``interim`` is the transcript Deepgram has finalized in this utterance plus its latest interim result;
- ``finalize`` sends ``{"type": "Finalize"}`` after the audio and waits for the result marked
  ``from_finalize``, or until every second sent is covered by final results. Deepgram documents that the
  answer is not guaranteed when little audio is buffered, so after ``finalize_timeout`` the latest
  interim words stand as final;
- ``aclose`` sends ``{"type": "CloseStream"}`` and lets Deepgram answer what it still has.

A socket that drops (no close frame, NET-*, 1011) is reconnected once, and the audio Deepgram had not
yet finalized is sent again, so the utterance carries on. A refused key or request, or a socket that
drops again before answering anything, fails the stream with a typed ``ProviderCallError``: the session
sees it at ``interim``/``finalize`` (``push`` never raises for the network) and retries on a fresh stream.

Times: Deepgram's timestamps count from the start of each socket; they are mapped onto this stream's
own clock (seconds of audio sent) and reported relative to the start of the utterance.

Why raw ``websockets`` and not the SDK's socket client: see ``parley.providers.deepgram_wire``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from parley.audio.codecs import ulaw_encode
from parley.audio.frame import PCM16
from parley.audio.resample import Resampler
from parley.providers.asr.base import Transcript, Word, check_vocabulary
from parley.providers.deepgram_wire import (
    DEFAULT_BASE_URL,
    PROVIDER,
    close_error,
    open_socket,
    query,
    ws_url,
)
from parley.providers.errors import ProviderCallError, ProviderRejected, ProviderUnavailable
from parley.redaction import excerpt

log = structlog.get_logger("parley.providers.asr.deepgram")

KEEPALIVE = json.dumps({"type": "KeepAlive"})
FINALIZE = json.dumps({"type": "Finalize"})
CLOSE_STREAM = json.dumps({"type": "CloseStream"})
_EPSILON = 1e-3
"""Seconds of slack when comparing Deepgram's float timestamps with ours."""


# --- what Deepgram sends (the Results/Metadata/SpeechStarted/UtteranceEnd/Error messages of
# https://developers.deepgram.com/reference/speech-to-text/listen-streaming; field names as in the
# official SDK's ``deepgram.listen.v1.types``) ------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class WireWord(_Wire):
    word: str
    start: float
    end: float
    confidence: float = 1.0
    punctuated_word: str | None = None


class WireAlternative(_Wire):
    transcript: str = ""
    confidence: float = 1.0
    words: list[WireWord] = Field(default_factory=list)
    languages: list[str] = Field(default_factory=list)
    """Detected languages, most words first (``language=multi`` only)."""


class WireChannel(_Wire):
    alternatives: list[WireAlternative] = Field(default_factory=list)


class WireResults(_Wire):
    type: Literal["Results"]
    start: float
    duration: float
    is_final: bool = False
    speech_final: bool = False
    from_finalize: bool = False
    channel: WireChannel


# --- the stream ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """The query parameters of a socket, as an agent chose them (``DeepgramAsrOptions``)."""

    model: str = "nova-3"
    language: str | None = "en"
    encoding: Literal["linear16", "mulaw"] = "linear16"
    sample_rate: int = 16_000
    interim_results: bool = True
    endpointing_ms: int | None = 300
    utterance_end_ms: int | None = None
    vad_events: bool = False
    punctuate: bool = True
    smart_format: bool = False

    def params(self, vocabulary: Sequence[str]) -> list[tuple[str, str]]:
        pairs = query(
            {
                "model": self.model,
                "language": self.language,
                "encoding": self.encoding,
                "sample_rate": self.sample_rate,
                "channels": 1,
                "interim_results": self.interim_results,
                "endpointing": self.endpointing_ms if self.endpointing_ms is not None else False,
                "utterance_end_ms": self.utterance_end_ms,
                "vad_events": self.vad_events,
                "punctuate": self.punctuate,
                "smart_format": self.smart_format,
            }
        )
        # Nova-3 takes key terms (phrases, no boosts); older models boost single keywords.
        name = "keyterm" if self.model.startswith("nova-3") else "keywords"
        pairs.extend((name, term) for term in vocabulary)
        return pairs

    @property
    def bytes_per_second(self) -> int:
        return self.sample_rate * (1 if self.encoding == "mulaw" else 2)


@dataclass(slots=True)
class _Audio:
    data: bytes
    seconds: float
    start: float = 0.0
    """Where it began on the stream's clock, once sent."""


@dataclass(frozen=True, slots=True)
class _Control:
    """A JSON message queued in order with the audio."""

    text: str


@dataclass(frozen=True, slots=True)
class _Segment:
    text: str
    start: float
    end: float
    confidence: float
    words: tuple[tuple[str, float, float, float], ...] = ()
    language: str | None = None


@dataclass(slots=True)
class StreamStats:
    """What a stream did on the wire (tests and logs)."""

    connections: int = 0
    reconnects: int = 0
    keepalives: int = 0
    dropped_audio_s: float = 0.0
    finalize_timeouts: int = 0
    request_ids: list[str] = field(default_factory=list)
    speech_started: list[float] = field(default_factory=list)
    """Stream-clock times of Deepgram's SpeechStarted events (``vad_events``)."""
    utterance_ends: list[float] = field(default_factory=list)
    """``last_word_end`` of each UtteranceEnd (``utterance_end_ms``), on the stream's clock."""


class DeepgramRecognizer:
    """Opens one Deepgram socket per recognition stream; streams share nothing but settings."""

    name = "deepgram"

    def __init__(
        self,
        api_key: str,
        settings: ListenSettings | None = None,
        *,
        base_url: str = DEFAULT_BASE_URL,
        input_rate: int = 16_000,
        connect_timeout: float = 5.0,
        finalize_timeout: float = 1.5,
        keepalive_interval: float = 4.0,
        max_queued_seconds: float = 10.0,
        max_resend_seconds: float = 30.0,
    ) -> None:
        if not api_key:
            raise ValueError("Deepgram needs an API key")
        self.sample_rate = input_rate
        """What ``push`` takes (the session's 16 kHz); resampled to ``settings.sample_rate`` on the wire."""
        self.settings = settings or ListenSettings()
        self.base_url = base_url
        self.connect_timeout = connect_timeout
        self.finalize_timeout = finalize_timeout
        self.keepalive_interval = keepalive_interval
        self.max_queued_seconds = max_queued_seconds
        self.max_resend_seconds = max_resend_seconds
        self._api_key = api_key

    def open_stream(self, vocabulary: Sequence[str] = ()) -> DeepgramStream:
        url = ws_url(self.base_url, "/v1/listen", self.settings.params(check_vocabulary(vocabulary)))
        return DeepgramStream(self, url, self._api_key)

    async def warm_up(self) -> None:
        """Nothing to load; a socket is opened by a stream's first audio."""
        return None


class DeepgramStream:
    """One speaker's recognition over one socket (reopened once if it drops). See the module docs."""

    def __init__(self, recognizer: DeepgramRecognizer, url: str, api_key: str) -> None:
        self._rec = recognizer
        self._settings = recognizer.settings
        self._url = url
        self._api_key = api_key
        self._bytes_per_second = self._settings.bytes_per_second
        self._resampler = (
            Resampler(recognizer.sample_rate, self._settings.sample_rate)
            if recognizer.sample_rate != self._settings.sample_rate
            else None
        )
        self.stats = StreamStats()
        self._outbox: deque[_Audio | _Control] = deque()
        self._queued_s = 0.0
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._failure: ProviderCallError | None = None
        # The stream's clock: seconds of audio sent, over every socket it had.
        self._sent_s = 0.0
        self._socket_origin = 0.0
        """Where the current socket's time 0 is on the stream's clock."""
        self._covered_s = 0.0
        """End of the last final result: audio before it is transcribed for good."""
        self._unfinalized: deque[_Audio] = deque()
        """Sent audio no final result covers yet: sent again on a new socket if this one drops."""
        # The utterance under way.
        self._utterance_start = 0.0
        self._pushed_in_utterance = 0.0
        self._finals: list[_Segment] = []
        self._interim: _Segment | None = None
        self._finalize_mark: float | None = None
        """Where Finalize went out on the stream's clock (None while it is still queued)."""
        self._finalize_pending = False
        self._finalize_answered = False
        self._answered_on_socket = False
        self._warned_overflow = False
        self._waiters: list[asyncio.Future[None]] = []

    # --- the RecognitionStream Protocol ----------------------------------------------------------

    async def push(self, pcm: PCM16) -> None:
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"push needs 1-D int16 samples, got {pcm.dtype} with shape {pcm.shape}")
        if self._closing or self._failure is not None or not pcm.size:
            return  # a failed stream reports at interim/finalize; the session's hearing carries on
        self._queue_audio(self._encode(pcm))

    async def interim(self) -> Transcript:
        self._raise_failure()
        segments = [*self._finals, *([self._interim] if self._interim is not None else [])]
        return self._transcript(segments, is_final=False, audio_seconds=self._pushed_in_utterance)

    async def finalize(self) -> Transcript:
        """The final transcript of everything pushed since the last ``finalize``; the next starts here."""
        self._raise_failure()
        if self._resampler is not None:
            self._queue_audio(self._encode_tail())
        audio_seconds = self._pushed_in_utterance
        self._pushed_in_utterance = 0.0
        if audio_seconds <= 0 and not self._finals and self._interim is None:
            return Transcript("", is_final=True)
        self._finalize_mark = None
        self._finalize_pending = True
        self._finalize_answered = False
        self._outbox.append(_Control(FINALIZE))
        self._ensure_running()
        self._wake.set()
        try:
            promoted = await self._await_finalized()
        finally:
            self._finalize_pending = False
        segments = [*self._finals, *([self._interim] if promoted and self._interim is not None else [])]
        result = self._transcript(segments, is_final=True, audio_seconds=audio_seconds)
        self._utterance_start = self._finalize_mark if self._finalize_mark is not None else self._sent_s
        self._finals = []
        self._interim = None
        return result

    async def wait_for_update(self) -> None:
        """Until the next message from Deepgram (or a failure) was taken in: a caller following live
        captions checks ``interim()`` after each."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def _notify(self) -> None:
        self._changed.set()
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def aclose(self) -> None:
        """Close the socket (politely, unless the stream failed) and wait for it. A failed stream's
        failure stays where ``interim``/``finalize`` report it; only a cancellation of the caller's own
        task is raised from here."""
        if self._closing:
            return
        self._closing = True
        runner = self._runner
        if runner is None or runner.done():
            return
        try:
            if self._failure is None:
                self._outbox.append(_Control(CLOSE_STREAM))
                self._wake.set()
                timeout = self._rec.connect_timeout + self._rec.finalize_timeout
                done, _ = await asyncio.wait({runner}, timeout=timeout)
                if not done:
                    log.info("deepgram stream did not close in time; cutting it", url=self._redacted_url)
            runner.cancel()
            await runner
        except asyncio.CancelledError:
            runner.cancel()  # the caller goes away: the socket does not outlive it
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            # Otherwise it was the runner's own end, cancelled here (or by the loop shutting down).

    # --- audio in ------------------------------------------------------------------------------

    def _encode(self, pcm: PCM16) -> bytes:
        wire = self._resampler.process(pcm) if self._resampler is not None else pcm
        return self._to_bytes(wire)

    def _encode_tail(self) -> bytes:
        """What the resampler still holds, so Finalize comes after all of the utterance's audio."""
        assert self._resampler is not None
        return self._to_bytes(self._resampler.flush())

    def _to_bytes(self, wire: PCM16) -> bytes:
        if not wire.size:
            return b""
        if self._settings.encoding == "mulaw":
            return ulaw_encode(wire)
        return wire.astype("<i2", copy=False).tobytes()

    def _queue_audio(self, data: bytes) -> None:
        if not data:  # Deepgram closes a socket on an empty binary frame
            return
        seconds = len(data) / self._bytes_per_second
        self._outbox.append(_Audio(data, seconds))
        self._queued_s += seconds
        self._pushed_in_utterance += seconds
        while self._queued_s > self._rec.max_queued_seconds:
            self._drop_oldest_audio()
        self._ensure_running()
        self._wake.set()

    def _drop_oldest_audio(self) -> None:
        for index, item in enumerate(self._outbox):
            if isinstance(item, _Audio):
                del self._outbox[index]
                self._queued_s -= item.seconds
                self.stats.dropped_audio_s += item.seconds
                if not self._warned_overflow:
                    self._warned_overflow = True
                    log.warning(
                        "deepgram send queue full: dropping the oldest audio",
                        url=self._redacted_url,
                        max_queued_seconds=self._rec.max_queued_seconds,
                    )
                return
        self._queued_s = 0.0

    # --- the socket ----------------------------------------------------------------------------

    @property
    def _redacted_url(self) -> str:
        return self._url.split("?", 1)[0]

    def _ensure_running(self) -> None:
        if self._runner is None and not self._closing:
            self._runner = asyncio.create_task(self._run(), name="deepgram-listen")

    async def _run(self) -> None:
        """Connect, serve, and reconnect once per drop (again only after the new socket answered).
        A socket that dropped while nothing was under way is reopened by the next audio, not at once."""
        try:
            while True:
                dropped = await self._serve(await self._connect())
                if dropped is None or self._closing:
                    return
                if not self._answered_on_socket and self.stats.connections > 1:
                    raise ProviderUnavailable(
                        f"Deepgram's socket dropped again before answering ({dropped})", provider=PROVIDER
                    )
                log.warning("deepgram socket dropped; reconnecting once", error=str(dropped))
                self._resend_unfinalized()
                while not self._outbox and not self._closing:
                    self._wake.clear()
                    await self._wake.wait()
                if self._closing:
                    return  # nothing to close: the socket is already gone
                self.stats.reconnects += 1
        except ProviderCallError as exc:
            self._fail(exc)
        except Exception as exc:  # a bug here must still reach the session as a failed stream
            log.exception("deepgram stream failed", url=self._redacted_url)
            self._fail(ProviderUnavailable(f"Deepgram stream failed: {exc!r}", provider=PROVIDER))

    async def _connect(self) -> ClientConnection:
        socket = await open_socket(
            self._url, self._api_key, what="live transcription", open_timeout=self._rec.connect_timeout
        )
        self.stats.connections += 1
        self._answered_on_socket = False
        self._socket_origin = self._sent_s
        return socket

    async def _serve(self, socket: ClientConnection) -> ProviderCallError | None:
        """Run one socket; the failure that ended it if it dropped, None once it closed as asked."""
        async with socket:
            reader = asyncio.create_task(self._read(socket))
            writer = asyncio.create_task(self._write(socket))
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
                if writer.done():
                    problem = writer.exception()
                    if problem is not None and not isinstance(problem, ConnectionClosed):
                        raise problem
                # CloseStream went out, or a send found the socket closed: either way the reader
                # ends once the socket does, with what Deepgram said last.
                return await reader
            finally:
                writer.cancel()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await writer

    async def _write(self, socket: ClientConnection) -> None:
        """Send the outbox in order; a KeepAlive whenever nothing went out for a while."""
        interval = self._rec.keepalive_interval
        while True:
            if not self._outbox:
                self._wake.clear()
                try:
                    async with asyncio.timeout(interval):
                        await self._wake.wait()
                except TimeoutError:
                    await socket.send(KEEPALIVE)
                    self.stats.keepalives += 1
                continue
            item = self._outbox.popleft()
            if isinstance(item, _Audio):
                self._queued_s -= item.seconds
                item.start = self._sent_s
                self._sent_s += item.seconds
                self._unfinalized.append(item)
                self._trim_unfinalized()
                await socket.send(item.data)
                continue
            try:
                await socket.send(item.text)
            except ConnectionClosed:
                self._outbox.appendleft(item)  # sent again on the next socket
                raise
            if item.text == FINALIZE:
                self._finalize_mark = self._sent_s
                self._changed.set()
            elif item.text == CLOSE_STREAM:
                return

    async def _read(self, socket: ClientConnection) -> ProviderCallError | None:
        try:
            async for message in socket:
                if isinstance(message, str):
                    self._on_message(message)
        except ConnectionClosed as exc:
            if self._closing and exc.rcvd is not None and exc.rcvd.code == 1000:
                return None
            failure = close_error("live transcription", exc, self._api_key)
            if isinstance(failure, ProviderRejected):
                raise failure from exc
            return failure
        if self._closing:
            return None
        return ProviderUnavailable("Deepgram closed the live transcription socket", provider=PROVIDER)

    def _resend_unfinalized(self) -> None:
        """Put the audio Deepgram had not finalized (and a Finalize it had not answered) back in front."""
        again: list[_Audio | _Control] = []
        for chunk in self._unfinalized:
            again.append(_Audio(chunk.data, chunk.seconds))
            self._queued_s += chunk.seconds
        if self._finalize_pending and self._finalize_mark is not None and not self._finalize_answered:
            again.append(_Control(FINALIZE))
            self._finalize_mark = None
        self._sent_s = self._unfinalized[0].start if self._unfinalized else self._sent_s
        self._unfinalized.clear()
        self._interim = None  # the new socket hears that audio again
        self._outbox.extendleft(reversed(again))

    def _trim_unfinalized(self) -> None:
        kept = sum(chunk.seconds for chunk in self._unfinalized)
        while self._unfinalized and kept > self._rec.max_resend_seconds:
            kept -= self._unfinalized.popleft().seconds

    # --- what comes back -----------------------------------------------------------------------

    def _on_message(self, text: str) -> None:
        try:
            message: dict[str, Any] = json.loads(text)
        except json.JSONDecodeError:
            log.warning(
                "deepgram sent a message that is not JSON", excerpt=excerpt(text, 200, [self._api_key])
            )
            return
        kind = message.get("type")
        if kind == "Results":
            try:
                self._on_results(WireResults.model_validate(message))
            except ValidationError as exc:
                log.warning(
                    "deepgram sent Results of an unknown shape",
                    error=excerpt(str(exc), 300, [self._api_key]),
                )
            return
        if kind == "Metadata":
            request_id = message.get("request_id")
            if isinstance(request_id, str):
                self.stats.request_ids.append(request_id)
        elif kind == "SpeechStarted":
            self._note_time(self.stats.speech_started, message.get("timestamp"))
        elif kind == "UtteranceEnd":
            self._note_time(self.stats.utterance_ends, message.get("last_word_end"))
        elif kind == "Error":
            description = excerpt(
                str(message.get("description") or message.get("variant") or ""), 300, [self._api_key]
            )
            self._fail(ProviderRejected(f"Deepgram reported an error: {description}", provider=PROVIDER))
        self._answered_on_socket = True
        self._notify()

    def _note_time(self, into: list[float], value: object) -> None:
        if isinstance(value, int | float):
            into.append(self._socket_origin + float(value))

    def _on_results(self, results: WireResults) -> None:
        self._answered_on_socket = True
        origin = self._socket_origin
        start, end = origin + results.start, origin + results.start + results.duration
        alternative = results.channel.alternatives[0] if results.channel.alternatives else None
        segment = _Segment(
            text=alternative.transcript.strip() if alternative else "",
            start=start,
            end=end,
            confidence=alternative.confidence if alternative else 1.0,
            language=alternative.languages[0] if alternative and alternative.languages else None,
            words=tuple(
                (w.punctuated_word or w.word, origin + w.start, origin + w.end, w.confidence)
                for w in (alternative.words if alternative else [])
            ),
        )
        stale = end <= self._utterance_start + _EPSILON and end > 0
        if results.is_final:
            self._covered_s = max(self._covered_s, end)
            while self._unfinalized and (
                self._unfinalized[0].start + self._unfinalized[0].seconds <= self._covered_s + _EPSILON
            ):
                self._unfinalized.popleft()
            if not stale and segment.text:
                self._finals.append(segment)
            self._interim = None
            if results.from_finalize and self._finalize_mark is not None and not stale:
                self._finalize_answered = True
        elif not stale:
            self._interim = segment
        self._notify()

    async def _await_finalized(self) -> bool:
        """Until Deepgram answered Finalize (False), or did not in time (True: the interim stands)."""
        loop = asyncio.get_running_loop()
        # Finalize first has to go out (the socket may still be opening): bounded by the connect timeout.
        hard_deadline = loop.time() + self._rec.connect_timeout + 2 * self._rec.finalize_timeout
        deadline: float | None = None
        while True:
            self._raise_failure()
            mark = self._finalize_mark
            if mark is not None:
                if self._finalize_answered or self._covered_s >= mark - _EPSILON:
                    return False
                if deadline is None:
                    deadline = loop.time() + self._rec.finalize_timeout
            until = min(deadline, hard_deadline) if deadline is not None else hard_deadline
            remaining = until - loop.time()
            if remaining <= 0:
                if mark is None:
                    raise ProviderUnavailable(
                        "Deepgram's socket did not take Finalize in time", provider=PROVIDER
                    )
                self.stats.finalize_timeouts += 1
                log.info(
                    "deepgram did not answer Finalize in time; the interim result stands",
                    waited_s=self._rec.finalize_timeout,
                )
                return True
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._changed.wait()

    def _transcript(self, segments: list[_Segment], *, is_final: bool, audio_seconds: float) -> Transcript:
        base = self._utterance_start
        words = tuple(
            Word(text, max(0.0, start - base), max(0.0, end - base), probability)
            for segment in segments
            for text, start, end, probability in segment.words
        )
        spoken = [segment for segment in segments if segment.text]
        text = " ".join(segment.text for segment in spoken)
        confidence = sum(segment.confidence for segment in spoken) / len(spoken) if spoken else 1.0
        return Transcript(
            text,
            is_final=is_final,
            confidence=confidence,
            start=words[0].start if words else 0.0,
            end=words[-1].end if words else 0.0,
            words=words,
            audio_seconds=audio_seconds,
            language=self._language_of(spoken),
        )

    def _language_of(self, spoken: list[_Segment]) -> str | None:
        """What Deepgram detected (``multi``), else the language it was told, as ISO 639-1."""
        detected = [segment.language for segment in spoken if segment.language]
        if detected:
            return max(set(detected), key=detected.count).split("-")[0].lower()
        configured = self._settings.language
        return configured.split("-")[0].lower() if configured and configured != "multi" else None

    # --- failure -------------------------------------------------------------------------------

    def _fail(self, failure: ProviderCallError) -> None:
        if self._failure is None:
            self._failure = failure
            log.warning("deepgram stream failed", error=str(failure), url=self._redacted_url)
        self._outbox.clear()
        self._queued_s = 0.0
        self._notify()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure
