"""What the engine hears of the caller's turn: its audio, and the recognition stream that transcribes it.

The session decides what speech is (a turn, a pause, a barge-in, talk it speaks over); this keeps the
turn's audio whole — the pre-roll before the VAD's onset, the pauses inside it, an earlier piece the
agent cut in on — so the recogniser hears what one pass over the recording would, and numbers each
utterance so that its seconds are priced at the recogniser that heard them.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import structlog

from parley.audio.frame import PCM16
from parley.engine.events import EventType
from parley.providers.asr.base import RecognitionStream, SetsLanguage, SpeechRecognizer, Transcript
from parley.providers.events import ProviderEvent, Reporter, bind_reporter

log = structlog.get_logger("parley.engine.hearing")

ASR_RATE = 16000
PREROLL_S = 0.3
"""Audio kept from before the VAD's onset: the first sound of a word scores low."""
SOFT_PREROLL_S = 1.0
"""…and up to this much when the frames before the onset sound faintly like speech: soft first words
score below the VAD's start threshold, yet one batch pass over the recording hears them. (Not a second
of every turn: a cloud recogniser bills each second it is sent.)"""
SOFT_SPEECH = 0.15
"""VAD probability of a faintly voiced frame (line noise scores a few hundredths)."""
SOFT_GAP_FRAMES = 3
"""Unvoiced frames allowed between soft words while walking back from the onset."""

Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]
"""Starts a task the session owns (and cancels at its end), so none outlives the call."""

__all__ = ["ASR_RATE", "Hearing"]


@dataclass(slots=True)
class _Utterance:
    """What one recognition stream is hearing: a number for its utterance, which the stream's failovers
    name and so does the turn's ``transcript.final``, so the turn's seconds are priced at the recogniser
    that heard them. A stream hears one utterance per ``finalize``; the next one is numbered anew, as the
    failover chain starts it again from its primary."""

    number: int
    numbers: Iterator[int]

    def finish(self) -> int:
        """The finalized utterance's number; the stream's next utterance gets the next one."""
        done, self.number = self.number, next(self.numbers)
        return done


class Hearing:
    """The caller's turn as the recogniser hears it. Events (interims, failures, failovers) go to the
    session's timeline through ``emit``; an interim transcript with words is handed to ``on_interim``,
    where the session judges a barge-in."""

    def __init__(
        self,
        recognizer: SpeechRecognizer,
        *,
        language: str | None,
        frame_samples: int,
        interim_interval_s: float | None,
        emit: Callable[..., None],
        report: Reporter,
        spawn: Spawn,
        on_interim: Callable[[str], None],
        session_id: str,
    ) -> None:
        self._recognizer = recognizer
        self._language = language
        self._frame_samples = frame_samples
        self._interim_interval_s = interim_interval_s
        self._emit = emit
        self._report = report
        self._spawn = spawn
        self._on_interim = on_interim
        self._session_id = session_id
        self._numbers = itertools.count(1)
        self._stream, self._utterance = self._open()
        self._preroll: deque[tuple[PCM16, float]] = deque(
            maxlen=max(1, int(SOFT_PREROLL_S * ASR_RATE / frame_samples))
        )
        """Recent frames outside the turn, with their VAD probability."""
        self._audio: list[PCM16] = []
        self._since_interim = 0.0
        self._interim_task: asyncio.Task[Any] | None = None
        self._prefix = ""
        """Words of an earlier turn this one continues (the agent cut in on a pause), when its audio is
        not at hand to be heard again with the new words."""
        self._committed: list[PCM16] = []
        """The last committed turn's audio, until the caller's next onset: a turn the agent cut in on is
        decoded again whole, with its continuation, rather than in two pieces."""
        self._behind = False
        """The turn's audio grew at its front (a merge): the recognition stream must hear it all again."""

    @property
    def language(self) -> str | None:
        """The caller's language once it is known (the agent's, or the one heard on the first turn)."""
        return self._language

    def hear_in(self, language: str) -> None:
        """Recognise ``language`` from now on, in this stream and every later one."""
        self._language = language
        if isinstance(self._stream, SetsLanguage):
            self._stream.set_language(language)

    # --- the turn's audio ---------------------------------------------------------------------------

    def keep_outside(self, pcm: PCM16, probability: float) -> None:
        """A frame outside the turn: it may yet join the next one as pre-roll."""
        self._preroll.append((pcm, probability))

    async def add_preroll(self, *, whole: bool, soft: bool) -> None:
        """The frames before the onset join the turn (see ``_take_preroll``)."""
        for pcm in self._take_preroll(whole=whole, soft=soft):
            await self.add(pcm)

    def _take_preroll(self, *, whole: bool, soft: bool) -> list[PCM16]:
        """The frames before the onset that join the turn: ``PREROLL_S``, or (``soft``) back through
        faintly voiced frames (soft first words) up to ``SOFT_PREROLL_S``, with ``PREROLL_S`` before
        those; or all of them (``whole``)."""
        frames = list(self._preroll)
        self._preroll.clear()
        if whole:
            return [pcm for pcm, _ in frames]
        per_second = ASR_RATE / self._frame_samples
        margin = max(1, int(PREROLL_S * per_second))
        soft_start, gap = len(frames), 0
        for i in range(len(frames) - 1, -1, -1) if soft else ():
            if frames[i][1] >= SOFT_SPEECH:
                soft_start, gap = i, 0
            else:
                gap += 1
                if gap > SOFT_GAP_FRAMES:
                    break
        begin = max(0, min(len(frames) - margin, soft_start - margin))
        return [pcm for pcm, _ in frames[begin:]]

    async def add(self, pcm: PCM16) -> None:
        """Speech of the turn: the stream hears it now, and an interim transcript is due every
        ``interim_interval_s`` of it."""
        self._audio.append(pcm)
        if self._behind:
            self._behind = False
            await self.restart()  # holds all of the turn's audio, this chunk included
        else:
            await self._stream.push(pcm)
        self._since_interim += len(pcm) / ASR_RATE
        interval = self._interim_interval_s
        if interval is not None and self._since_interim >= interval and self._interim_task is None:
            self._since_interim = 0.0
            self._interim_task = self._spawn(self._interim(self._stream))

    def add_pause(self, pcm: PCM16) -> None:
        """A pause inside the turn is part of it: should the caller go on, the turn is decoded again
        whole, with the quiet ends of words the VAD called silence (as one batch pass would)."""
        self._audio.append(pcm)

    def audio(self) -> npt.NDArray[np.int16]:
        """The turn's audio so far, in one piece."""
        return np.concatenate(self._audio) if self._audio else np.zeros(0, np.int16)

    def with_earlier_words(self, text: str) -> str:
        """``text`` after the words of the earlier turn it continues, when that was not heard again."""
        return f"{self._prefix} {text}".strip()

    def clear_turn(self) -> None:
        """The turn is over (answered, dropped or talked over): the next one starts empty."""
        self._audio = []
        self._behind = False
        self._prefix = ""
        self._since_interim = 0.0

    def commit_turn(self) -> None:
        """The turn is answered; its audio is kept until the caller's next onset, in case the agent cut
        in on a pause (``rejoin_committed``)."""
        self._committed = self._audio
        self.clear_turn()

    def forget_committed(self) -> None:
        """The last committed turn cannot be continued any more (a new turn, typed text)."""
        self._committed = []

    def rejoin_committed(self, earlier_words: str) -> None:
        """This turn continues the last committed one: its audio joins this turn's front, to be heard
        again whole with the new words; without it, its words (``earlier_words``) lead the transcript."""
        if self._committed:
            self._audio[:0] = self._committed
            self._behind = True
        else:
            self._prefix = earlier_words
        self._committed = []

    # --- the recognition stream ---------------------------------------------------------------------

    async def catch_up(self) -> bool:
        """After a merge, a fresh stream hears the whole turn; True when that was needed."""
        if not self._behind:
            return False
        self._behind = False
        await self.restart()
        return True

    async def restart(self) -> None:
        """A fresh stream holding the turn so far (the old one was finalized at the pause)."""
        self._replace_stream()
        for pcm in list(self._audio):  # a merge may grow the list while a push awaits
            await self._stream.push(pcm)

    def start_afresh(self) -> None:
        """Speech under way is talked over: a fresh stream, so its words never reach a turn."""
        self._replace_stream()

    async def finalize(self) -> tuple[Transcript, int] | None:
        """The turn's final transcript and the number of the utterance it is. A recogniser that fails
        is tried once more, on a fresh stream holding the same audio; ``None`` when that fails too.
        Each failure is on the timeline."""
        for attempt in (1, 2):
            try:
                if attempt == 2:
                    await self.restart()
                utterance = self._utterance
                final = await self._stream.finalize()
                return final, utterance.finish()
            except Exception as exc:  # a broken recogniser must not swallow the caller's turn
                log.warning(
                    "speech recognition failed", session_id=self._session_id, attempt=attempt, error=repr(exc)
                )
                self._emit(
                    EventType.ERROR, where="asr.finalize", stage="asr", attempt=attempt, error=repr(exc)
                )
        return None

    async def aclose(self) -> None:
        """Close the stream at the session's end; one that cannot close is logged, not raised."""
        try:
            await self._stream.aclose()
        except Exception as exc:  # the session ends all the same; a recogniser that cannot close is news
            log.warning("closing the speech recogniser failed", session_id=self._session_id, error=repr(exc))

    async def _interim(self, stream: RecognitionStream) -> None:
        try:
            result = await stream.interim()
            if stream is self._stream and result.text.strip():
                self._emit(EventType.TRANSCRIPT_INTERIM, text=result.text.strip())
                self._on_interim(result.text)
        except Exception as exc:  # interims are a nicety: the final transcript still decides the turn
            self._emit(EventType.ERROR, where="asr.interim", stage="asr", error=repr(exc))
        finally:
            self._interim_task = None

    def _replace_stream(self) -> None:
        old = self._stream
        self._stream, self._utterance = self._open()
        self._spawn(old.aclose())

    def _open(self) -> tuple[RecognitionStream, _Utterance]:
        """A recognition stream for the next words, in the caller's language once it is known, and the
        utterance it hears: its failovers name that (a stream of its own reporter, as a reply's requests
        have)."""
        utterance = _Utterance(next(self._numbers), self._numbers)
        recognizer = bind_reporter(self._recognizer, lambda event: self._heard_event(utterance, event))
        stream = recognizer.open_stream()
        if self._language is not None and isinstance(stream, SetsLanguage):
            stream.set_language(self._language)
        return stream, utterance

    def _heard_event(self, utterance: _Utterance, event: ProviderEvent) -> None:
        """A recognition stream's failover names the utterance it was hearing."""
        if event.kind == "failover":
            self._emit(EventType.PROVIDER_FAILOVER, **event.data, recognition=utterance.number)
        else:
            self._report(event)
