"""Embedded speech recognition with faster-whisper (CTranslate2), tuned for conversational latency.

Whisper's encoder is trained on 30 s windows and faster-whisper always pads to one, so a one-second
"yes" costs as much as a long sentence. CTranslate2 accepts shorter windows, so an utterance is encoded
in a window of ``min_window_seconds`` (10 s by default: about 4x faster on 2 cores, same accuracy on our
checks). The audio is padded with silence before computing features, as in Whisper's training; padding
the features with zeros, as faster-whisper does, makes short windows repeat short words. A token cap
and a repetition check catch what still slips through and redo that utterance with the full window.

A multilingual model (``base``) with ``language=None`` detects the language of each utterance, choosing
among ``languages`` only (a robotic or noisy line is otherwise easily "heard" as Thai), and then decodes
in it; a stream told the caller's language (``set_language``) stops detecting."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from parley.audio.frame import PCM16
from parley.providers.asr.base import Transcript, Word, check_vocabulary
from parley.providers.assets import whisper_tiny_en_dir
from parley.providers.foreground import in_foreground
from parley.providers.serial_worker import BACKGROUND, URGENT, Job, SerialWorker

os.environ["HF_HUB_OFFLINE"] = "1"  # before faster-whisper (and huggingface_hub) is ever imported

_RATE = 16_000
_FRAMES_PER_SECOND = 100
_HOP = _RATE // _FRAMES_PER_SECOND
_FULL_WINDOW = 3000
_TAIL_FRAMES = 200
_TOKENS_PER_SECOND = 8
_MAX_LENGTH = 448
_REPETITIVE = 2.4


@dataclass(frozen=True, slots=True)
class _Decoded:
    text: str
    avg_logprob: float
    words: tuple[Word, ...] = ()
    language: str | None = None
    language_probability: float | None = None


_EMPTY = _Decoded("", 0.0)
SILENT_TAIL_S = 0.2
"""The most audio an interim may have missed and still stand as the final: a pause being detected."""
SILENT_TAIL_DB = -30.0
"""…when it is this far below the loudest of the speech (line noise is 30–40 dB below a voice)."""


class WhisperRecognizer:
    """faster-whisper over a local model directory; all streams share one worker thread (or ``worker``).

    One thread because two transcriptions at once on 2 cores each run at half speed, and the final
    transcript of whoever finished speaking matters more than anyone's interim guess (finals jump the
    queue).
    """

    name = "whisper"
    sample_rate = _RATE

    def __init__(
        self,
        model_dir: str | os.PathLike[str] | None = None,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 1,
        language: str | None = "en",
        *,
        languages: Sequence[str] = (),
        initial_prompt: str | None = None,
        hotwords: str | None = None,
        word_timestamps: bool = False,
        min_window_seconds: float | None = 10.0,
        no_speech_threshold: float = 0.6,
        log_prob_threshold: float = -1.0,
        worker: SerialWorker | None = None,
    ) -> None:
        self.model_dir = Path(model_dir) if model_dir is not None else whisper_tiny_en_dir()
        if not (self.model_dir / "model.bin").is_file():
            # faster-whisper would take a path that does not exist for a hub model name.
            raise FileNotFoundError(f"{self.model_dir} is not a faster-whisper model directory: no model.bin")
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.language = language
        self.languages = tuple(languages)
        """What detection chooses among (``language=None`` on a multilingual model); empty: any."""
        self.initial_prompt = initial_prompt
        self.hotwords = hotwords
        self.word_timestamps = word_timestamps
        self.min_window_frames = (
            _FULL_WINDOW if min_window_seconds is None else round(min_window_seconds * _FRAMES_PER_SECOND)
        )
        self.no_speech_threshold = no_speech_threshold
        self.log_prob_threshold = log_prob_threshold
        self._owns_worker = worker is None
        self._worker = worker or SerialWorker("parley-whisper")
        self._model: Any = None
        self._tokenizer: Any = None
        self._tokenizers: dict[str, Any] = {}
        self._suppress: Any = None

    def open_stream(self, vocabulary: Sequence[str] = ()) -> WhisperStream:
        """``vocabulary`` goes to Whisper as hotwords (with the recogniser's own), biasing its decoding
        towards those spellings."""
        terms = check_vocabulary(vocabulary)
        hotwords = " ".join(filter(None, (self.hotwords, *terms))) or None
        return WhisperStream(self, hotwords)

    async def warm_up(self) -> None:
        """Load the model and run one short transcription so the first caller pays for neither."""
        await self._worker.run(partial(self._transcribe_sync, np.zeros(_RATE // 2, dtype=np.float32)), URGENT)

    def close(self) -> None:
        if self._owns_worker:
            self._worker.close()

    def _submit(
        self,
        audio: npt.NDArray[np.float32],
        priority: int,
        hotwords: str | None = None,
        language: str | None = None,
    ) -> Job[_Decoded]:
        """``language`` (a stream's, once known) overrides the recogniser's own setting."""
        final = priority == URGENT
        job = partial(
            self._transcribe_sync, audio, hotwords or self.hotwords, language or self.language, final=final
        )
        return self._worker.submit(in_foreground(job) if final else job, priority)

    def final_as_interim(self, language: str | None) -> bool:
        """Whether a final transcript decodes as an interim does: unless the language is to be detected
        (a final detects it on a full window)."""
        language = language or self.language
        return language is not None or (self._model is not None and not self._model.model.is_multilingual)

    def _load(self) -> Any:
        if self._model is None:
            from faster_whisper import WhisperModel
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            model = WhisperModel(
                str(self.model_dir),
                device="cpu",
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
                num_workers=1,
                local_files_only=True,
            )
            language = (self.language or "en") if model.model.is_multilingual else "en"
            self._tokenizer = Tokenizer(
                model.hf_tokenizer, model.model.is_multilingual, task="transcribe", language=language
            )
            self._tokenizers[language] = self._tokenizer
            self._suppress = get_suppressed_tokens(self._tokenizer, [-1])
            self._model = model
        return self._model

    def _tokenizer_for(self, language: str | None) -> Any:
        """The decoding prompt's tokenizer for a language (an English-only model has only English)."""
        if language is None or not self._model.model.is_multilingual:
            return self._tokenizer
        if language not in self._tokenizers:
            from faster_whisper.tokenizer import Tokenizer

            self._tokenizers[language] = Tokenizer(
                self._model.hf_tokenizer, True, task="transcribe", language=language
            )
        return self._tokenizers[language]

    def _detect(self, encoded: Any) -> tuple[str, float]:
        """The most likely of ``languages`` (all of Whisper's when empty) and its probability among them."""
        results = self._model.model.detect_language(encoded)[0]
        probabilities = {token[2:-2]: float(p) for token, p in results}
        choices = [code for code in self.languages if code in probabilities] or list(probabilities)
        best = max(choices, key=lambda code: probabilities[code])
        total = sum(probabilities[code] for code in choices)
        return best, probabilities[best] / total if total > 0 else 0.0

    def _transcribe_sync(
        self,
        audio: npt.NDArray[np.float32],
        hotwords: str | None = None,
        language: str | None = "en",
        *,
        final: bool = True,
    ) -> _Decoded:
        """Blocking transcription of float32 16 kHz audio; runs on the worker thread only.

        ``language=None`` on a multilingual model detects it first: for a final transcript on a full
        window (more reliable on short or synthetic speech), for an interim on the decoding window."""
        model = self._load()
        if audio.size == 0:
            return _EMPTY
        if not model.model.is_multilingual:
            language = "en"
        probability: float | None = None
        if language is None and final:
            language, probability = self._detect(self._encode(audio, _FULL_WINDOW))
        frames = math.ceil(audio.size / _HOP)
        if self.word_timestamps or frames > _FULL_WINDOW:
            decoded = self._transcribe_long(audio, hotwords, language)
            return dataclasses.replace(decoded, language_probability=probability)
        cap = math.ceil(audio.size / _RATE * _TOKENS_PER_SECOND) + 8
        window = min(_FULL_WINDOW, max(frames + _TAIL_FRAMES, self.min_window_frames))
        decoded, degenerate = self._decode(audio, window, cap, hotwords, language)
        if degenerate and window < _FULL_WINDOW:
            decoded, _ = self._decode(audio, _FULL_WINDOW, cap, hotwords, decoded.language)
        if probability is not None:
            decoded = dataclasses.replace(decoded, language_probability=probability)
        return decoded

    def _encode(self, audio: npt.NDArray[np.float32], window: int) -> Any:
        """The encoder's output for ``window`` feature frames, the audio padded with silence first."""
        padded = np.zeros(window * _HOP, dtype=np.float32)
        clip = audio[: padded.size]
        padded[: clip.size] = clip
        return self._model.encode(self._model.feature_extractor(padded, padding=0)[:, :window])

    def _prompt(self, hotwords: str | None, language: str | None = None) -> list[int]:
        tokenizer = self._tokenizer_for(language)
        previous: list[int] = []
        if self.initial_prompt:
            previous = tokenizer.encode(" " + self.initial_prompt.strip())
        prompt: list[int] = self._model.get_prompt(
            tokenizer, previous, without_timestamps=True, hotwords=hotwords
        )
        return prompt

    def _decode(
        self,
        audio: npt.NDArray[np.float32],
        window: int,
        cap: int,
        hotwords: str | None,
        language: str | None = None,
    ) -> tuple[_Decoded, bool]:
        """Greedy decoding of one window of ``window`` feature frames (100 per second).

        The audio is padded with silence *before* the log-mel features are computed, as Whisper saw in
        training. (faster-whisper pads the features with zeros instead; in a short window that makes
        the model repeat short words: "No? No?".) With ``language=None`` (multilingual) the language is
        detected on the same encoding first.
        """
        model = self._model
        encoded = self._encode(audio, window)
        probability: float | None = None
        if language is None and model.model.is_multilingual:
            language, probability = self._detect(encoded)
        prompt = self._prompt(hotwords, language)
        max_length = min(_MAX_LENGTH, len(prompt) + cap)
        result = model.model.generate(
            encoded,
            [prompt],
            beam_size=self.beam_size,
            max_length=max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
        )[0]
        tokens: list[int] = result.sequences_ids[0]
        text = str(self._tokenizer.decode(tokens)).strip()
        avg_logprob = float(result.scores[0]) * len(tokens) / (len(tokens) + 1)
        degenerate = len(prompt) + len(tokens) >= max_length or _repetitive(text)
        if result.no_speech_prob > self.no_speech_threshold and avg_logprob < self.log_prob_threshold:
            return _Decoded("", avg_logprob, language=language, language_probability=probability), False
        return _Decoded(text, avg_logprob, language=language, language_probability=probability), degenerate

    def _transcribe_long(
        self, audio: npt.NDArray[np.float32], hotwords: str | None, language: str | None = None
    ) -> _Decoded:
        """faster-whisper's own sliding-window loop, for >30 s audio and word timestamps."""
        segments, info = self._model.transcribe(
            audio,
            language=language,
            beam_size=self.beam_size,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            without_timestamps=False,
            word_timestamps=self.word_timestamps,
            initial_prompt=self.initial_prompt,
            hotwords=hotwords,
            no_speech_threshold=self.no_speech_threshold,
            log_prob_threshold=self.log_prob_threshold,
        )
        texts: list[str] = []
        words: list[Word] = []
        weighted, total = 0.0, 0
        for segment in segments:
            texts.append(segment.text.strip())
            weight = max(1, len(segment.tokens))
            weighted += segment.avg_logprob * weight
            total += weight
            words.extend(Word(w.word.strip(), w.start, w.end, w.probability) for w in segment.words or ())
        text = " ".join(t for t in texts if t)
        return _Decoded(text, weighted / total if total else 0.0, tuple(words), language or info.language)


def _repetitive(text: str) -> bool:
    """Whisper's failure mode on short windows: a short phrase repeated, or a longer one said twice (on
    a 10-12 s turn: "press 0 for help. press 0 for help.").

    A real "no, no" is flagged too; that only costs one more decode with the full window.
    """
    data = text.encode()
    if data and len(data) / len(zlib.compress(data)) > _REPETITIVE:
        return True
    words = re.findall(r"[\w']+", text.lower())
    for size in range(1, min(4, len(words) // 2) + 1):  # the whole text is one phrase said twice or more
        if len(words) % size == 0 and words == words[:size] * (len(words) // size):
            return True
    for size in range(1, 5):
        for i in range(len(words) - 3 * size + 1):
            if words[i : i + size] == words[i + size : i + 2 * size] == words[i + 2 * size : i + 3 * size]:
                return True
    for size in range(3, 9):  # a phrase of three words or more said twice in a row: people rarely do
        for i in range(len(words) - 2 * size + 1):
            if words[i : i + size] == words[i + size : i + 2 * size]:
                return True
    return False


def _only_silence_after(audio: npt.NDArray[np.float32], heard: int) -> bool:
    """Whether the audio after the first ``heard`` samples is at most ``SILENT_TAIL_S`` of silence: at
    least ``SILENT_TAIL_DB`` below the loudest 10 ms of the speech before it."""
    tail, speech = audio[heard:], audio[:heard]
    if tail.size > SILENT_TAIL_S * _RATE or speech.size < _RATE // 100:
        return False
    if tail.size == 0:
        return True
    windows = speech[: speech.size // 160 * 160].reshape(-1, 160)
    loudest = float(np.sqrt(np.mean(windows.astype(np.float64) ** 2, axis=1)).max())
    level = float(np.sqrt(np.mean(tail.astype(np.float64) ** 2)))
    return level <= loudest * 10 ** (SILENT_TAIL_DB / 20)


def _transcript(decoded: _Decoded, samples: int, is_final: bool) -> Transcript:
    seconds = samples / _RATE
    confidence = min(1.0, max(0.0, math.exp(decoded.avg_logprob))) if decoded.text else 0.0
    return Transcript(
        text=decoded.text,
        is_final=is_final,
        confidence=confidence,
        start=0.0,
        end=seconds,
        words=decoded.words,
        audio_seconds=seconds,
        language=decoded.language,
        language_probability=decoded.language_probability,
    )


class WhisperStream:
    """Keeps one utterance's audio; each result re-transcribes all of it (Whisper does not stream)."""

    def __init__(self, recognizer: WhisperRecognizer, hotwords: str | None = None) -> None:
        self._recognizer = recognizer
        self.hotwords = hotwords
        self.language: str | None = None
        """The caller's language once known (``set_language``); else the recogniser's setting."""
        self._reset()

    def set_language(self, language: str) -> None:
        """Transcribe in ``language`` from now on (jobs already queued keep theirs)."""
        self.language = language

    def _reset(self) -> None:
        self._chunks: list[PCM16] = []
        self._samples = 0
        self._interim_job: Job[_Decoded] | None = None
        self._interim_samples = 0
        """How much audio the interim under way is hearing."""
        self._last_interim = _transcript(_EMPTY, 0, False)
        self._last_interim_samples = 0

    async def push(self, pcm: PCM16) -> None:
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"push needs 1-D int16 samples, got {pcm.dtype} with shape {pcm.shape}")
        if pcm.size:
            self._chunks.append(pcm.copy())
            self._samples += int(pcm.size)

    def _audio(self) -> npt.NDArray[np.float32]:
        if not self._chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(self._chunks).astype(np.float32) / 32768.0).astype(np.float32)

    async def interim(self) -> Transcript:
        """A guess for the audio so far; while one is being computed, the previous guess."""
        if self._interim_job is not None or self._samples == self._last_interim_samples:
            return self._last_interim
        samples = self._samples
        job = self._recognizer._submit(self._audio(), BACKGROUND, self.hotwords, self.language)
        self._interim_job, self._interim_samples = job, samples
        try:
            decoded = await job.future
        except asyncio.CancelledError:
            job.cancel()
            raise
        finally:
            if self._interim_job is job:
                self._interim_job = None
        if decoded is None:  # finalize() came first and this guess was dropped unheard
            return _transcript(_EMPTY, 0, False)
        result = _transcript(decoded, samples, is_final=False)
        if self._interim_job is None and self._interim_samples == samples:
            # Still this utterance's (finalize() resets the stream, and a final may have taken this one).
            self._last_interim, self._last_interim_samples = result, samples
        return result

    async def finalize(self) -> Transcript:
        """The transcript of everything pushed; the stream starts a new utterance at once.

        An interim under way that heard all of the speech (what it missed is silence: the pause that ended
        the turn) is the final: the worker is busy with it, and a second pass over the same words would
        make the caller wait for both."""
        audio, samples = self._audio(), self._samples
        interim, heard = self._interim_job, self._interim_samples
        language = self.language
        self._reset()
        decoded: _Decoded | None = _EMPTY
        if (
            interim is not None
            and interim.started
            and self._recognizer.final_as_interim(language)
            and _only_silence_after(audio, heard)
        ):
            decoded = await asyncio.shield(interim.future)
            return _transcript(decoded or _EMPTY, samples, is_final=True)
        if interim is not None:
            interim.cancel()  # skipped if it has not started yet
        if samples:
            job = self._recognizer._submit(audio, URGENT, self.hotwords, language)
            try:
                decoded = await job.future
            except asyncio.CancelledError:
                job.cancel()
                raise
        return _transcript(decoded or _EMPTY, samples, is_final=True)

    async def aclose(self) -> None:
        if self._interim_job is not None:
            self._interim_job.cancel()
        self._reset()
