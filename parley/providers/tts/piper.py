"""Embedded speech synthesis with Piper (VITS over ONNX Runtime), one chunk per sentence.

We build the ONNX session ourselves (spinning off, thread counts set) instead of ``PiperVoice.load``,
which uses ONNX Runtime's defaults. Piper also peak-normalizes every sentence to full scale by default,
so loudness jumps from sentence to sentence; we keep the voice's natural level and offer ``volume``.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import AsyncGenerator, Iterator
from pathlib import Path
from typing import Any

from parley.audio.frame import PCM16
from parley.onnx import inference_session
from parley.providers.assets import piper_voice_files
from parley.providers.foreground import FOREGROUND
from parley.providers.serial_worker import URGENT, Job, SerialWorker


class PiperSynthesizer:
    """Piper voice; all calls of one synthesizer share one worker thread (or the ``worker`` given, to
    share one thread between several models).

    While the consumer plays sentence N, sentence N+1 is already being synthesized; when the consumer
    stops (barge-in), the queued sentence is dropped before it starts.
    """

    name = "piper"

    def __init__(
        self,
        onnx_path: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        threads: int = 2,
        length_scale: float | None = None,
        *,
        volume: float = 1.0,
        speaker_id: int | None = None,
        worker: SerialWorker | None = None,
    ) -> None:
        if importlib.util.find_spec("piper") is None:
            raise ModuleNotFoundError(
                "PiperSynthesizer needs piper-tts (GPL, an optional extra): pip install 'parley[gpl]'"
            )
        if onnx_path is None:
            default_onnx, default_config = piper_voice_files()
            onnx_path = default_onnx
            config_path = config_path or default_config
        self.onnx_path = Path(onnx_path)
        self.config_path = Path(config_path) if config_path is not None else Path(f"{self.onnx_path}.json")
        with self.config_path.open(encoding="utf-8") as config_file:
            self._config_dict: dict[str, Any] = json.load(config_file)
        self.sample_rate: int = int(self._config_dict["audio"]["sample_rate"])
        self.threads = threads
        self.length_scale = length_scale
        self.volume = volume
        self.speaker_id = speaker_id
        self._owns_worker = worker is None
        self._worker = worker or SerialWorker("parley-piper")
        self._voice: Any = None
        self._syn_config: Any = None
        self.sentences_synthesized = 0
        """How many sentences the model has run on (written by the worker thread; for metrics and tests)."""

    def _load(self) -> Any:
        if self._voice is None:
            from piper.config import PiperConfig, SynthesisConfig
            from piper.voice import PiperVoice

            session = inference_session(self.onnx_path, intra_op_threads=self.threads, inter_op_threads=1)
            self._syn_config = SynthesisConfig(
                speaker_id=self.speaker_id,
                length_scale=self.length_scale,
                normalize_audio=False,
                volume=self.volume,
            )
            self._voice = PiperVoice(session=session, config=PiperConfig.from_dict(self._config_dict))
        return self._voice

    def _sentences(self, text: str) -> Iterator[PCM16]:
        """Runs on the worker thread only: Piper's generator does the model work as it is advanced."""
        voice = self._load()
        for chunk in voice.synthesize(text, syn_config=self._syn_config):
            self.sentences_synthesized += 1
            pcm: PCM16 = chunk.audio_int16_array
            if pcm.size:
                yield pcm

    async def synthesize(self, text: str) -> AsyncGenerator[PCM16, None]:
        if not text.strip():
            return
        sentences: Iterator[PCM16] | None = None

        def step() -> PCM16 | None:
            nonlocal sentences
            if sentences is None:
                sentences = self._sentences(text)
            with FOREGROUND.hold():  # a caller is waiting for this audio; the model's next words are not
                return next(sentences, None)

        job: Job[PCM16 | None] = self._worker.submit(step, URGENT)
        try:
            while True:
                pcm = await job.future
                if pcm is None:
                    return
                job = self._worker.submit(step, URGENT)  # the next sentence, while this one plays
                yield pcm
        finally:
            job.cancel()

    async def warm_up(self) -> None:
        """Load the voice and synthesize one word, so the first reply pays for neither."""
        async for _ in self.synthesize("Hello."):
            pass

    def close(self) -> None:
        if self._owns_worker:
            self._worker.close()
