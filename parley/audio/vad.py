"""Voice activity detection: a per-frame speech probability from a small stateful model."""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np

from parley.audio.energy import rms_dbfs
from parley.audio.frame import PCM16


class VoiceActivityDetector(Protocol):
    """Scores fixed-size frames; keeps whatever state the model needs between calls."""

    name: str
    sample_rate: int
    frame_samples: int

    def probability(self, pcm: PCM16) -> float:
        """Speech probability in [0, 1] for exactly ``frame_samples`` samples at ``sample_rate``."""
        ...

    def reset(self) -> None: ...


class EnergyVAD:
    """Loudness as a stand-in for speech: deterministic and free, for tests and as a last-resort fallback.

    The probability is a logistic curve of the frame's dBFS, 0.5 at ``threshold_dbfs`` and about 0.9 at
    ``threshold_dbfs + softness_db``. It cannot tell speech from noise; a real model can.
    """

    name = "energy"

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        frame_ms: int = 20,
        threshold_dbfs: float = -40.0,
        softness_db: float = 6.0,
    ) -> None:
        if softness_db <= 0:
            raise ValueError(f"softness_db must be positive, got {softness_db}")
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        if self.frame_samples <= 0:
            raise ValueError(f"frame of {frame_ms} ms at {sample_rate} Hz holds no samples")
        self.threshold_dbfs = threshold_dbfs
        self._scale = softness_db / math.log(9.0)  # logistic(softness / scale) == 0.9

    def probability(self, pcm: PCM16) -> float:
        check_frame(self, pcm)
        z = (rms_dbfs(pcm) - self.threshold_dbfs) / self._scale
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    def reset(self) -> None:
        """Stateless; present for the Protocol."""


def check_frame(vad: VoiceActivityDetector, pcm: PCM16) -> None:
    """Rejects frames of the wrong size or type, which models would otherwise score as garbage."""
    if pcm.dtype != np.int16 or pcm.ndim != 1 or pcm.size != vad.frame_samples:
        raise ValueError(
            f"{vad.name} VAD needs {vad.frame_samples} int16 samples at {vad.sample_rate} Hz, "
            f"got {pcm.dtype} with shape {pcm.shape} (use parley.audio.rechunk.Rechunker)"
        )
