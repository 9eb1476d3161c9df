"""Sample-rate conversion for PCM16 mono, one-shot and streaming, over libsoxr.

Streaming uses soxr's variable-rate engine (``vr=True``) on purpose. Its fixed-rate engines filter in
FFT blocks, so on a 20 ms-per-chunk stream they release output in bursts: at 8 kHz <-> 16 kHz the
held-back audio swings between ~10 and ~115 ms (mean ~63 ms, same for 'MQ' and 'HQ'; 'LQ' still
~33 ms and rolls off 8 dB at 3.4 kHz; 'QQ' does no anti-aliasing at all). The vr engine releases
a steady amount every chunk (30 ms at 8k->16k, 15 ms at 16k->8k, 12.5 ms at 48k->16k) with a
steep filter (flat to 3.8 kHz, aliases below -120 dB at 16k->8k), which is what paced playout and
latency accounting need. That filter is not linear-phase (under 2 ms of dispersion across the voice
band), which voice does not mind. Offline one-shot conversion uses linear-phase 'HQ'.

Exactly doubling the rate (8 kHz phone audio going to 16 kHz recognisers) uses a short FIR of its own
instead: ~2 ms of delay against the vr engine's 30 ms, on the path of every end of turn and barge-in.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import soxr

from parley.audio.frame import PCM16

_EMPTY_F32: npt.NDArray[np.float32] = np.zeros(0, dtype=np.float32)


def _check_rates(from_rate: int, to_rate: int) -> None:
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {from_rate} -> {to_rate}")


def _check_pcm(pcm: PCM16) -> None:
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise ValueError(f"expected 1-D int16 PCM, got {pcm.dtype} with shape {pcm.shape}")


def _to_float(pcm: PCM16) -> npt.NDArray[np.float32]:
    return pcm.astype(np.float32) / np.float32(32768.0)


def _to_pcm16(samples: npt.NDArray[np.float32]) -> PCM16:
    # Round rather than truncate so a round trip through float is exact for PCM16 input.
    out: PCM16 = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)
    return out


def _from_float64(samples: npt.NDArray[np.float64]) -> PCM16:
    out: PCM16 = np.clip(np.rint(samples * 32768.0), -32768, 32767).astype(np.int16)
    return out


def resample(pcm: PCM16, from_rate: int, to_rate: int) -> PCM16:
    """Convert a whole clip at once (files, test fixtures); returns ``pcm`` itself when rates match."""
    _check_rates(from_rate, to_rate)
    _check_pcm(pcm)
    if from_rate == to_rate:
        return pcm
    if pcm.size == 0:
        return np.zeros(0, dtype=np.int16)
    out: npt.NDArray[np.float32] = soxr.resample(_to_float(pcm), from_rate, to_rate, quality="HQ")
    return _to_pcm16(out)


class _Doubler:
    """Exactly 2x up with a 63-tap linear-phase FIR (Kaiser-windowed sinc, cut off at the input's
    Nyquist): about 2 ms of delay where soxr's steady engine holds back 30 ms. Phone audio arrives at
    8 kHz and every millisecond of it is on the turn's critical path (end of speech, barge-in); its
    images above 4 kHz are filtered out (> 60 dB down for a 1 kHz tone)."""

    TAPS = 63
    DELAY = (TAPS - 1) // 2
    """Output samples the filter lags by; held back at the start and given out by ``flush``."""

    def __init__(self) -> None:
        n = np.arange(self.TAPS) - self.DELAY
        taps = np.sinc(n / 2) * np.kaiser(self.TAPS, 8.0)
        self._taps = taps * (2.0 / taps.sum())  # zero-stuffing halves the level
        self._tail = np.zeros(self.TAPS - 1)
        self._skip = self.DELAY

    def process(self, samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        stuffed = np.zeros(2 * samples.size)
        stuffed[0::2] = samples
        window = np.concatenate([self._tail, stuffed])
        self._tail = window[-(self.TAPS - 1) :]
        out: npt.NDArray[np.float64] = np.convolve(window, self._taps, mode="valid")
        if self._skip:
            dropped = min(self._skip, out.size)
            self._skip -= dropped
            out = out[dropped:]
        return out

    def flush(self) -> npt.NDArray[np.float64]:
        owed = self.DELAY - self._skip  # what the start held back is what the end still owes
        return self.process(np.zeros((owed + 1) // 2))[:owed]


class Resampler:
    """Converts a live stream chunk by chunk, keeping filter state across calls.

    Not thread-safe: one instance per stream direction.
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        _check_rates(from_rate, to_rate)
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._stream: soxr.ResampleStream | None = None
        self._doubler: _Doubler | None = None
        self._samples_in = 0
        self._samples_out = 0
        self.reset()

    @property
    def is_identity(self) -> bool:
        return self.from_rate == self.to_rate

    @property
    def latency(self) -> float:
        """Seconds of input audio that went in but has not come out yet (for the playout clock)."""
        expected = self._samples_in * self.to_rate / self.from_rate
        return max(0.0, expected - self._samples_out) / self.to_rate

    def process(self, pcm: PCM16) -> PCM16:
        _check_pcm(pcm)
        if self._doubler is not None:
            out = _from_float64(self._doubler.process(pcm.astype(np.float64) / 32768.0))
        elif self._stream is not None:
            out = _to_pcm16(self._stream.resample_chunk(_to_float(pcm)))
        else:
            return pcm
        self._samples_in += pcm.size
        self._samples_out += out.size
        return out

    def flush(self) -> PCM16:
        """Drain the filter tail at end of stream; the resampler is ready for a new stream afterwards."""
        if self._doubler is not None:
            out = _from_float64(self._doubler.flush())
        elif self._stream is not None:
            out = _to_pcm16(self._stream.resample_chunk(_EMPTY_F32, last=True))
        else:
            return np.zeros(0, dtype=np.int16)
        self.reset()
        return out

    def reset(self) -> None:
        """Drop buffered audio and filter state (e.g. after a barge-in flush)."""
        self._samples_in = 0
        self._samples_out = 0
        self._stream = None
        self._doubler = None
        if self.to_rate == 2 * self.from_rate:
            self._doubler = _Doubler()
        elif not self.is_identity:
            self._stream = soxr.ResampleStream(self.from_rate, self.to_rate, 1, dtype="float32", vr=True)
