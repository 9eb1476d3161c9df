"""Silero VAD v5+ through ONNX Runtime, using the model file that ships inside the ``silero_vad`` wheel."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from parley.audio.frame import PCM16
from parley.audio.vad import check_frame
from parley.onnx import inference_session
from parley.providers.assets import silero_vad_onnx

_FRAME_SAMPLES = {16000: 512, 8000: 256}
_CONTEXT_SAMPLES = {16000: 64, 8000: 32}
_STATE_SHAPE = (2, 1, 128)


def bundled_model_path() -> Path:
    """Where pip put ``silero_vad/data/silero_vad.onnx``, checked against its recorded sha256.

    Found without importing the ``silero_vad`` package, which pulls in torch (Parley does not install it).
    """
    return silero_vad_onnx()


@functools.lru_cache(maxsize=4)
def _session(path: str) -> ort.InferenceSession:
    """One session per model file for the whole process: the recurrent state lives in each detector,
    and ``InferenceSession.run`` is thread-safe, so hundreds of calls can share one copy of the weights."""
    return inference_session(path)


class SileroVAD:
    """Speech probability per 32 ms frame (512 samples at 16 kHz, 256 at 8 kHz).

    The model is recurrent and also looks at the last 64 (16 kHz) or 32 (8 kHz) samples of the previous
    frame, so frames must be fed in stream order, one detector per stream. Each call blocks for a fraction
    of a millisecond on one core, so an event-loop caller runs it in a worker thread.
    """

    name = "silero"

    def __init__(self, sample_rate: int = 16000, model_path: str | Path | None = None) -> None:
        if sample_rate not in _FRAME_SAMPLES:
            raise ValueError(f"Silero VAD runs at 8000 or 16000 Hz, got {sample_rate} (resample first)")
        self.sample_rate = sample_rate
        self.frame_samples = _FRAME_SAMPLES[sample_rate]
        self._context_samples = _CONTEXT_SAMPLES[sample_rate]
        self._session = _session(str(model_path or bundled_model_path()))
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._input = np.zeros((1, self._context_samples + self.frame_samples), dtype=np.float32)
        self._state: npt.NDArray[np.float32] = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self.reset()

    def probability(self, pcm: PCM16) -> float:
        check_frame(self, pcm)
        ctx = self._context_samples
        # Slide the last context samples to the front, then append the new frame scaled to [-1, 1).
        self._input[0, :ctx] = self._input[0, -ctx:]
        np.multiply(pcm, np.float32(1.0 / 32768.0), out=self._input[0, ctx:], casting="unsafe")
        feeds = {"input": self._input, "state": self._state, "sr": self._sr}
        out, state = self._session.run(["output", "stateN"], feeds)
        self._state = state
        return float(out[0, 0])

    def reset(self) -> None:
        """Forget the stream: zero recurrent state and context (new call, or after a long gap)."""
        self._state = np.zeros(_STATE_SHAPE, dtype=np.float32)
        self._input[:] = 0.0
