"""End-of-turn prediction from how speech sounds: Smart Turn v3.2 (a Whisper-encoder classifier, ONNX).

Silence alone cannot tell "What's the weather like in…" from "…in Paris?": people pause mid-phrase as long
as they pause at the end. Smart Turn hears intonation and phrasing, so the engine can ask it after a short
silence whether the user is done, instead of waiting out a long fixed timeout.

Input contract of the model: the last 8 s of 16 kHz mono audio, zero-padded at the *front* when shorter,
normalised to zero mean and unit variance, as an 80×800 Whisper log-mel spectrogram; output is
P(turn complete) in [0, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr
from faster_whisper.feature_extractor import FeatureExtractor

from parley.audio.frame import PCM16
from parley.onnx import inference_session
from parley.providers.assets import verify_model_file

SAMPLE_RATE = 16_000
WINDOW_SECONDS = 8
WINDOW_SAMPLES = SAMPLE_RATE * WINDOW_SECONDS
MODEL_FILENAME = "smart-turn-v3.2-cpu.onnx"
FETCH_SCRIPT = "scripts/fetch_smart_turn.py"
DEFAULT_THRESHOLD = 0.5
"""Smart Turn's own decision point."""

_NORM_EPS = 1e-7
# Whisper's extractor, set up for an 8 s window: 400-point FFT, hop 160, 80 Slaney mel bands.
_FEATURES = FeatureExtractor(feature_size=80, sampling_rate=SAMPLE_RATE, chunk_length=WINDOW_SECONDS)


class SmartTurnModelMissing(FileNotFoundError):
    """The ONNX file is not in the model cache yet."""


def model_cache_dir() -> Path:
    """Where Parley keeps model files extracted from PyPI packages (``PARLEY_MODEL_CACHE``)."""
    configured = os.environ.get("PARLEY_MODEL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "parley" / "models"


def default_model_path() -> Path:
    return model_cache_dir() / MODEL_FILENAME


def smart_turn_features(pcm16_16k: PCM16) -> npt.NDArray[np.float32]:
    """The model's input for one utterance: an (80, 800) log-mel image of its last 8 seconds."""
    audio = pcm16_16k[-WINDOW_SAMPLES:].astype(np.float32) / 32768.0
    window = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
    window[WINDOW_SAMPLES - audio.shape[0] :] = audio
    # Statistics over the padded window, silence included: that is what the model was trained on.
    window = (window - window.mean()) / np.sqrt(window.var() + _NORM_EPS)
    features = _FEATURES(window, padding=0)
    return np.asarray(features, dtype=np.float32)


class SmartTurnDetector:
    """P(turn complete) for the user's speech so far; blocking, so call it off the event loop.

    ``threshold`` is the default decision point for ``is_complete``; an engine that weighs the score
    against silence length or a transcript can read ``probability_complete`` directly. One instance is
    safe to share between threads (ONNX Runtime sessions are), so all sessions of a worker can use it.
    The model in Parley's cache is checked against its recorded sha256 (``ModelAssetError`` if it is
    not that file); a ``model_path`` given explicitly is the caller's own model and is not.
    """

    name = "smart-turn-v3.2"
    sample_rate = SAMPLE_RATE

    def __init__(
        self, model_path: str | Path | None = None, threads: int = 1, threshold: float = DEFAULT_THRESHOLD
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise SmartTurnModelMissing(
                f"Smart Turn model not found at {path}. Run `python {FETCH_SCRIPT}` to extract it from the "
                "pipecat-ai wheel on PyPI (set PARLEY_MODEL_CACHE to change where models live)."
            )
        if model_path is None:
            verify_model_file(path, MODEL_FILENAME, f"extract it again with: python {FETCH_SCRIPT} --force")
        self.model_path = path
        self.threshold = threshold
        self._session = inference_session(path, intra_op_threads=threads)
        self._input_name = self._session.get_inputs()[0].name

    def probability_complete(self, pcm16_16k: PCM16, sample_rate: int = SAMPLE_RATE) -> float:
        """Score the turn's audio so far (only its last 8 s matter).

        The score leans on the trailing silence: pass the speech plus the same short silence every time
        (100-200 ms, as the model was trained); after ~500 ms of silence it calls nearly everything done.
        """
        if pcm16_16k.dtype != np.int16 or pcm16_16k.ndim != 1:
            raise ValueError(f"need 1-D int16 samples, got {pcm16_16k.dtype} with shape {pcm16_16k.shape}")
        if pcm16_16k.shape[0] == 0:
            raise ValueError("cannot judge an empty utterance")
        pcm = pcm16_16k
        if sample_rate != SAMPLE_RATE:
            # Resample only the tail the model will see (plus a little for the filter to settle).
            tail = pcm[-(WINDOW_SECONDS * sample_rate + sample_rate // 10) :]
            pcm = soxr.resample(tail, sample_rate, SAMPLE_RATE, quality="HQ")
        features = smart_turn_features(pcm)[np.newaxis]
        (scores,) = self._session.run(None, {self._input_name: features})
        return float(np.clip(np.asarray(scores).reshape(-1)[0], 0.0, 1.0))

    def is_complete(self, pcm16_16k: PCM16, sample_rate: int = SAMPLE_RATE) -> bool:
        return self.probability_complete(pcm16_16k, sample_rate) >= self.threshold
