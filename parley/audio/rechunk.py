"""Fixed-size framing: VADs and codecs want exact frames, transports deliver whatever size they like."""

from __future__ import annotations

import numpy as np

from parley.audio.frame import PCM16, AudioFrame


class Rechunker:
    """Cuts arbitrary pushes into ``frame_samples``-long frames, keeping the remainder for the next push."""

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be positive, got {frame_samples}")
        self.frame_samples = frame_samples
        self._buf = np.zeros(frame_samples, dtype=np.int16)
        self._fill = 0

    @property
    def pending(self) -> int:
        """Samples held back until the next frame is complete."""
        return self._fill

    def push(self, pcm: PCM16) -> list[PCM16]:
        if pcm.dtype != np.int16 or pcm.ndim != 1:
            raise ValueError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")
        n = self.frame_samples
        frames: list[PCM16] = []
        pos = 0
        if self._fill:
            take = min(n - self._fill, pcm.size)
            self._buf[self._fill : self._fill + take] = pcm[:take]
            self._fill += take
            pos = take
            if self._fill < n:
                return frames
            frames.append(self._buf.copy())
            self._fill = 0
        whole = (pcm.size - pos) // n
        if whole:
            # One copy for all whole frames; the views share it and never alias the caller's array.
            block = pcm[pos : pos + whole * n].copy()
            frames.extend(block[i * n : (i + 1) * n] for i in range(whole))
            pos += whole * n
        rest = pcm.size - pos
        self._buf[:rest] = pcm[pos:]
        self._fill = rest
        return frames

    def push_frame(self, frame: AudioFrame) -> list[AudioFrame]:
        """Like ``push`` but keeps timestamps: each output frame is stamped with its first sample's time.

        Held-back samples are assumed to run straight into ``frame`` (a contiguous stream).
        """
        start = frame.timestamp - self._fill / frame.sample_rate if self._fill else frame.timestamp
        out = []
        for i, pcm in enumerate(self.push(frame.pcm)):
            out.append(AudioFrame(pcm, frame.sample_rate, start + i * self.frame_samples / frame.sample_rate))
        return out

    def flush(self) -> PCM16 | None:
        """The held-back tail padded with silence to a whole frame, or None when nothing is held."""
        if not self._fill:
            return None
        out = np.zeros(self.frame_samples, dtype=np.int16)
        out[: self._fill] = self._buf[: self._fill]
        self._fill = 0
        return out

    def reset(self) -> None:
        self._fill = 0
