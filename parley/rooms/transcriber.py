"""Per-leg transcription: each participant's own audio, its own VAD and recognition stream, no diarization.

The room hands every leg's 20 ms of audio to its transcriber each tick (``feed``, which never waits).
The transcriber works through it on a task of its own, so a slow recogniser delays only that leg's
transcript, never the room's clock or the other legs. Hearing follows the session's (``engine/session.py``):
cut to the VAD's frame, score, ``Endpointer`` for speech start and pause, push speech with 300 ms of
pre-roll into a ``RecognitionStream``. There is no turn-taking here: an utterance ends when its pause
lasts ``silence_s``; the stream is finalized on a task of its own while a fresh one takes the next words.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence

import structlog

from parley.audio.endpointing import Boundary, Endpointer
from parley.audio.frame import PCM16, AudioFrame
from parley.audio.rechunk import Rechunker
from parley.audio.vad import VoiceActivityDetector
from parley.engine.agent import EndpointingSettings
from parley.engine.events import EventType
from parley.providers.asr.base import RecognitionStream, SpeechRecognizer, check_vocabulary
from parley.rooms.model import ROOM_RATE, TICK_S, Emit, Participant, Role, Utterance

log = structlog.get_logger("parley.rooms.transcriber")

PREROLL_S = 1.0
"""Audio kept from before the VAD's onset, as in a call's session: soft first words score below its
threshold."""
MAX_BACKLOG_S = 10.0
"""Audio a transcriber may fall behind by before it drops the oldest (a stalled recogniser)."""

UtteranceCallback = Callable[[Utterance], Awaitable[None] | None]
SpeakingCallback = Callable[[Participant, bool], None]
"""Told when a participant starts (True) or pauses (False) speaking, long before the transcript is final:
a coach must not call a long answer in progress dead air."""
TranscriberFactory = Callable[[Participant, Emit], "LegTranscriber | None"]
"""What a room calls for each leg that joins; None leaves that leg untranscribed."""


class LegTranscriber:
    """Turns one participant's audio (16 kHz, on the room clock) into ``room.utterance`` events.

    Frame timestamps are the room clock, so ``start``/``end`` are comparable across legs. A recogniser
    failure is an ``error`` event (``where="room.asr"``) and the leg carries on with a fresh stream.
    """

    def __init__(
        self,
        participant: Participant,
        recognizer: SpeechRecognizer,
        vad: VoiceActivityDetector,
        emit: Emit,
        *,
        silence_s: float = 0.6,
        endpointing: EndpointingSettings | None = None,
        on_utterance: UtteranceCallback | None = None,
        on_speaking: SpeakingCallback | None = None,
        vocabulary: Sequence[str] = (),
    ) -> None:
        if vad.sample_rate != ROOM_RATE or recognizer.sample_rate != ROOM_RATE:
            raise ValueError(
                f"room transcription runs at {ROOM_RATE} Hz; the VAD runs at {vad.sample_rate} Hz "
                f"and the recogniser at {recognizer.sample_rate} Hz"
            )
        if silence_s <= 0:
            raise ValueError(f"silence_s must be positive, got {silence_s}")
        ep = endpointing or EndpointingSettings()
        self.participant = participant
        self.vocabulary = check_vocabulary(vocabulary)
        """Names this leg's recogniser should expect (the team's competitors, products …)."""
        self.silence_s = silence_s
        self._recognizer = recognizer
        self._vad = vad
        self._emit = emit
        self._on_utterance = on_utterance
        self._on_speaking = on_speaking
        self._endpointer = Endpointer(
            ep.start_threshold, ep.stop_threshold, ep.min_speech_ms / 1000, ep.pause_ms / 1000
        )
        self._rechunker = Rechunker(vad.frame_samples)
        self._preroll: deque[AudioFrame] = deque(
            maxlen=max(1, int(PREROLL_S * ROOM_RATE / vad.frame_samples))
        )
        self._fence = -math.inf
        """Room time before which audio is no pre-roll (the participant's mode changed then)."""
        self._stream: RecognitionStream = recognizer.open_stream(self.vocabulary)
        self._start: float | None = None
        self._end = 0.0
        self._pushed = 0
        self._inbox: asyncio.Queue[AudioFrame] = asyncio.Queue()
        self._backlog_max = max(1, int(MAX_BACKLOG_S / TICK_S))
        self._worker: asyncio.Task[None] | None = None
        self._finalizing: set[asyncio.Task[None]] = set()
        self._closed = False
        self.dropped_frames = 0
        """Frames dropped because this transcriber fell more than ``MAX_BACKLOG_S`` behind."""

    # --- the room's side ----------------------------------------------------------------------------

    def feed(self, frame: AudioFrame) -> None:
        """Queue one frame of this participant's audio; never waits (called from the room's tick)."""
        if self._closed:
            return
        if self._inbox.qsize() >= self._backlog_max:
            self._inbox.get_nowait()
            self._inbox.task_done()
            self.dropped_frames += 1
            if self.dropped_frames == 1:
                log.warning(
                    "room transcriber fell behind; dropping its oldest audio",
                    participant_id=self.participant.id,
                    backlog_s=MAX_BACKLOG_S,
                )
        self._inbox.put_nowait(frame)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def fence(self, at: float) -> None:
        """Audio from before room time ``at`` is never the pre-roll of an utterance that starts later:
        the participant's mode changed at ``at``, and words it said softly before (muted, say) must not
        be transcribed into a line judged by the mode it is in after."""
        self._fence = max(self._fence, at)

    async def drain(self) -> None:
        """Returns once every fed frame was heard and every finished utterance was emitted."""
        if self._worker is not None and not self._worker.done():
            await self._inbox.join()
        while self._finalizing:
            await asyncio.gather(*list(self._finalizing), return_exceptions=True)

    async def close(self) -> None:
        """Hear what was fed, finish an utterance under way, and close the recognition stream."""
        if self._closed:
            return
        await self.drain()
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._start is not None:
            if self._endpointer.in_speech:
                self._end = self._endpointer.last_voiced_end
            try:
                self._finish()
            except Exception as exc:  # the last words are lost; the leg is leaving anyway
                self._failed(exc, "finalize")
            await self.drain()
        await self._close_stream(self._stream)

    # --- hearing ------------------------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            frame = await self._inbox.get()
            try:
                for chunk in self._rechunker.push_frame(frame):
                    await self._hear(chunk)
            except Exception as exc:  # this leg's transcript has a gap; the room and the call go on
                self._failed(exc, "hearing")
                try:
                    await self._restart()
                except Exception as again:  # the next frame tries again
                    self._failed(again, "restart")
            finally:
                self._inbox.task_done()

    async def _hear(self, chunk: AudioFrame) -> None:
        probability = self._vad.probability(chunk.pcm)
        boundary = self._endpointer.update(probability, chunk.timestamp, chunk.duration)
        if boundary is not None:
            self._speaking(boundary.kind is Boundary.STARTED)
        if boundary is not None and boundary.kind is Boundary.STARTED:
            if self._start is None:
                self._start = boundary.at
            self._preroll.append(chunk)  # the onset's own chunk is heard whatever the fence
            await self._push([c.pcm for c in self._preroll if c.timestamp >= self._fence or c is chunk])
            self._preroll.clear()
        elif self._endpointer.in_speech or boundary is not None:
            await self._push([chunk.pcm])
            if boundary is not None:
                self._end = boundary.at
        else:
            self._preroll.append(chunk)
            if self._start is not None and self._endpointer.silence >= self.silence_s:
                self._finish()

    def _speaking(self, active: bool) -> None:
        if self._on_speaking is None:
            return
        try:
            self._on_speaking(self.participant, active)
        except Exception as exc:  # a consumer's bug must not stop this leg's transcript
            log.exception("room speaking consumer failed", participant_id=self.participant.id)
            self._emit(
                EventType.ERROR, where="room.on_speaking", participant_id=self.participant.id, error=repr(exc)
            )

    async def _push(self, chunks: Iterable[PCM16]) -> None:
        for pcm in chunks:
            await self._stream.push(pcm)
            self._pushed += pcm.size

    def _finish(self) -> None:
        """The pause was long enough: finalize this stream on the side, take the next words on a new one."""
        stream, self._stream = self._stream, self._recognizer.open_stream(self.vocabulary)
        start, end, pushed = self._start or 0.0, self._end, self._pushed
        self._start, self._pushed = None, 0
        task = asyncio.get_running_loop().create_task(self._finalize(stream, start, end, pushed))
        self._finalizing.add(task)
        task.add_done_callback(self._finalizing.discard)

    async def _finalize(self, stream: RecognitionStream, start: float, end: float, pushed: int) -> None:
        try:
            result = await stream.finalize()
        except Exception as exc:  # expected now and then (a remote recogniser drops): said, not fatal
            self._failed(exc, "finalize")
            return
        finally:
            await self._close_stream(stream)
        text = result.text.strip()
        if not text:
            return
        p = self.participant
        self._emit(
            EventType.ROOM_UTTERANCE,
            participant_id=p.id,
            role=str(p.role),
            text=text,
            start=start,
            end=end,
            audio_seconds=pushed / ROOM_RATE,
        )
        if self._on_utterance is not None:
            try:
                outcome = self._on_utterance(Utterance(p.id, p.role, text, start, end))
                if inspect.isawaitable(outcome):
                    await outcome
            except Exception as exc:  # a consumer's bug must not stop this leg's transcript
                log.exception("room utterance consumer failed", participant_id=p.id)
                self._emit(EventType.ERROR, where="room.on_utterance", participant_id=p.id, error=repr(exc))

    async def _restart(self) -> None:
        self._start, self._pushed = None, 0
        old, self._stream = self._stream, self._recognizer.open_stream(self.vocabulary)
        self._endpointer.reset()
        self._rechunker.reset()
        self._preroll.clear()
        self._vad.reset()
        await self._close_stream(old)

    def _failed(self, exc: Exception, stage: str) -> None:
        log.warning(
            "room transcription failed", participant_id=self.participant.id, stage=stage, error=repr(exc)
        )
        self._emit(
            EventType.ERROR,
            where="room.asr",
            stage=stage,
            participant_id=self.participant.id,
            error=repr(exc),
        )

    async def _close_stream(self, stream: RecognitionStream) -> None:
        try:
            await stream.aclose()
        except Exception as exc:  # nothing more will be heard on it; the leak is worth a line in the log
            log.warning(
                "closing a room recognition stream failed",
                participant_id=self.participant.id,
                error=repr(exc),
            )


def per_leg_transcription(
    recognizer: SpeechRecognizer,
    vad_factory: Callable[[], VoiceActivityDetector],
    *,
    silence_s: float = 0.6,
    endpointing: EndpointingSettings | None = None,
    on_utterance: UtteranceCallback | None = None,
    on_speaking: SpeakingCallback | None = None,
    roles: Iterable[Role] | None = None,
    vocabulary: Sequence[str] = (),
) -> TranscriberFactory:
    """A room's ``transcriber_factory``: one shared recogniser, a VAD of its own per leg (VADs keep
    state), and only the ``roles`` given (all by default: e.g. leave out ``agent``, whose words the
    timeline already has)."""
    wanted = frozenset(roles) if roles is not None else frozenset(Role)

    def make(participant: Participant, emit: Emit) -> LegTranscriber | None:
        if participant.role not in wanted:
            return None
        return LegTranscriber(
            participant,
            recognizer,
            vad_factory(),
            emit,
            silence_s=silence_s,
            endpointing=endpointing,
            on_utterance=on_utterance,
            on_speaking=on_speaking,
            vocabulary=vocabulary,
        )

    return make
