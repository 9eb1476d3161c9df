"""The unit of audio that moves through Parley: PCM16 mono with its rate and a monotonic timestamp."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PCM16 = npt.NDArray[np.int16]
"""Mono signed 16-bit samples."""


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """A run of PCM16 mono samples.

    ``timestamp`` is the monotonic time (``time.monotonic()`` seconds) of the first sample, so latency is
    measured on one clock from the wire to the speaker.
    """

    pcm: PCM16
    sample_rate: int
    timestamp: float = 0.0

    def __post_init__(self) -> None:
        if self.pcm.dtype != np.int16 or self.pcm.ndim != 1:
            raise ValueError(
                f"AudioFrame needs 1-D int16 samples, got {self.pcm.dtype} with shape {self.pcm.shape}"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def num_samples(self) -> int:
        return int(self.pcm.shape[0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    @property
    def end_timestamp(self) -> float:
        return self.timestamp + self.duration

    def to_bytes(self) -> bytes:
        """Little-endian PCM16, the wire format of every raw-PCM transport."""
        return self.pcm.astype("<i2", copy=False).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes, sample_rate: int, timestamp: float = 0.0) -> AudioFrame:
        if len(data) % 2:
            raise ValueError(f"PCM16 payload must have an even number of bytes, got {len(data)}")
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=True)
        return cls(pcm, sample_rate, timestamp)

    @classmethod
    def silence(cls, duration: float, sample_rate: int, timestamp: float = 0.0) -> AudioFrame:
        return cls(np.zeros(round(duration * sample_rate), dtype=np.int16), sample_rate, timestamp)

    def to_float32(self) -> npt.NDArray[np.float32]:
        """Samples scaled to [-1, 1), the input most models want."""
        return (self.pcm.astype(np.float32) / 32768.0).astype(np.float32)


def float_to_pcm16(samples: npt.NDArray[np.floating]) -> PCM16:
    """Clip and scale float samples in [-1, 1] to int16."""
    pcm: PCM16 = (np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)
    return pcm
