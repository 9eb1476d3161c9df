"""WebRTC's GMM voice detector (``webrtcvad-wheels``): tiny, no model file, hard 0/1 decisions."""

from __future__ import annotations

import webrtcvad

from parley.audio.frame import PCM16
from parley.audio.vad import check_frame

_RATES = (8000, 16000, 32000, 48000)
_FRAME_MS = (10, 20, 30)


class WebRTCVAD:
    """Speech yes/no per 10, 20 or 30 ms frame, reported as probability 0.0 or 1.0.

    ``aggressiveness`` 0..3: higher rejects more non-speech and also more quiet speech.
    """

    name = "webrtc"

    def __init__(self, sample_rate: int = 16000, aggressiveness: int = 2, frame_ms: int = 30) -> None:
        if sample_rate not in _RATES:
            raise ValueError(f"WebRTC VAD runs at {_RATES} Hz, got {sample_rate}")
        if frame_ms not in _FRAME_MS:
            raise ValueError(f"WebRTC VAD frames are {_FRAME_MS} ms, got {frame_ms}")
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self.sample_rate = sample_rate
        self.frame_samples = sample_rate * frame_ms // 1000
        self.aggressiveness = aggressiveness
        self._vad = webrtcvad.Vad(aggressiveness)

    def probability(self, pcm: PCM16) -> float:
        check_frame(self, pcm)
        return 1.0 if self._vad.is_speech(pcm.astype("<i2", copy=False).tobytes(), self.sample_rate) else 0.0

    def reset(self) -> None:
        """The detector adapts its noise model over time; a new one starts clean."""
        self._vad = webrtcvad.Vad(self.aggressiveness)
