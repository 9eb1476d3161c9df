"""Any OpenAI-compatible transcription endpoint (``POST /v1/audio/transcriptions``) as a recogniser.

The endpoint takes a whole file, so this is a batch recogniser per turn: the session pushes the turn's
audio as it is spoken, and ``finalize`` sends it as one 16 kHz mono WAV through the official ``openai``
SDK (``client.audio.transcriptions.create(file=..., model=..., language=..., prompt=...)``). The stream's
vocabulary goes in the ``prompt``, which steers the spelling of names.

Interims: by default ``interim`` makes no request and returns an empty guess, so a turn costs one
request; barge-ins are then confirmed by the final transcript at the caller's pause. With ``interim``
enabled each interim the session asks for (every ``interim_interval_s`` of speech, one at a time) sends
the audio so far: quicker barge-in confirmation, at the price of billing that audio again.

OpenAI's own API, and servers that copy the route (vLLM serving Whisper, speaches), answer it; the
llama.cpp server does not transcribe (it has no such route).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import httpx2  # the SDK's HTTP client (errors while reading a response are its own)
import numpy as np
import openai
import structlog
from openai import AsyncOpenAI

from parley.audio.frame import PCM16
from parley.audio.wav import write_wav
from parley.providers.asr.base import Transcript, check_vocabulary
from parley.providers.openai_audio import provider_error

log = structlog.get_logger("parley.providers.asr.openai_transcribe")

PROVIDER = "openai"
SAMPLE_RATE = 16_000
MAX_TURN_S = 300.0
"""The longest turn sent (about 9.6 MB of WAV; the endpoint takes up to 25 MB): beyond it, the oldest
audio is dropped rather than holding unbounded memory for a caller who never pauses."""
MAX_PROMPT_CHARS = 1000


class OpenAITranscriber:
    """A factory of per-speaker streams sharing one SDK client and one model choice."""

    name = PROVIDER
    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        client: AsyncOpenAI,
        model: str,
        *,
        language: str | None = None,
        prompt: str | None = None,
        interim: bool = False,
        max_turn_s: float = MAX_TURN_S,
    ) -> None:
        self._client = client
        self.model = model
        self.language = language
        self.prompt = prompt
        self.interim = interim
        self.max_samples = int(max_turn_s * SAMPLE_RATE)

    def open_stream(self, vocabulary: Sequence[str] = ()) -> OpenAITranscriptionStream:
        return OpenAITranscriptionStream(self, check_vocabulary(vocabulary))

    async def warm_up(self) -> None:
        """Nothing to load, and a request would be billed: the first turn is the first request."""
        return None

    async def transcribe(self, pcm: PCM16, vocabulary: Sequence[str] = ()) -> str:
        """The text of one stretch of 16 kHz audio (one request)."""
        buffer = io.BytesIO()
        write_wav(buffer, pcm, SAMPLE_RATE)
        prompt = _prompt(self.prompt, vocabulary)
        try:
            result = await self._client.audio.transcriptions.create(
                file=("turn.wav", buffer.getvalue(), "audio/wav"),
                model=self.model,
                response_format="json",
                language=self.language or openai.omit,
                prompt=prompt or openai.omit,
            )
        except (openai.OpenAIError, httpx2.TransportError) as exc:
            raise provider_error(exc, PROVIDER, "OpenAI transcription", self._client.api_key) from exc
        text: str = result.text
        return text.strip()


class OpenAITranscriptionStream:
    """One speaker's turn: audio is kept until ``finalize`` sends it (and starts the next turn)."""

    def __init__(self, recognizer: OpenAITranscriber, vocabulary: tuple[str, ...]) -> None:
        self._recognizer = recognizer
        self._vocabulary = vocabulary
        self._pieces: list[PCM16] = []
        self._samples = 0
        self._dropped = 0

    @property
    def seconds(self) -> float:
        return self._samples / SAMPLE_RATE

    async def push(self, pcm: PCM16) -> None:
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"push needs 1-D int16 samples, got {pcm.dtype} with shape {pcm.shape}")
        self._pieces.append(pcm.copy())
        self._samples += len(pcm)
        limit = self._recognizer.max_samples
        while self._samples > limit and len(self._pieces) > 1:
            oldest = self._pieces.pop(0)
            self._samples -= len(oldest)
            if not self._dropped:
                log.warning("openai_transcription_turn_too_long", kept_s=limit / SAMPLE_RATE)
            self._dropped += len(oldest)

    async def interim(self) -> Transcript:
        seconds = self.seconds
        if not self._recognizer.interim or not self._samples:
            return Transcript("", False, end=seconds, audio_seconds=0.0)
        text = await self._recognizer.transcribe(self._audio(), self._vocabulary)
        return Transcript(text, False, end=seconds, audio_seconds=seconds)

    async def finalize(self) -> Transcript:
        pcm, seconds = self._audio(), self.seconds
        self._reset()  # what is pushed while the request runs belongs to the next turn
        if not len(pcm):
            return Transcript("", True)
        text = await self._recognizer.transcribe(pcm, self._vocabulary)
        return Transcript(text, True, end=seconds, audio_seconds=seconds)

    async def aclose(self) -> None:
        self._reset()

    def _audio(self) -> PCM16:
        return np.concatenate(self._pieces) if self._pieces else np.zeros(0, np.int16)

    def _reset(self) -> None:
        self._pieces = []
        self._samples = 0
        self._dropped = 0


def _prompt(prompt: str | None, vocabulary: Sequence[str]) -> str:
    """The agent's prompt, then the stream's terms (names the model should spell as written)."""
    parts = [prompt.strip()] if prompt and prompt.strip() else []
    if vocabulary:
        parts.append(", ".join(vocabulary) + ".")
    return " ".join(parts)[:MAX_PROMPT_CHARS]
