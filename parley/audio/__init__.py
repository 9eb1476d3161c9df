"""Pure DSP: PCM frames, resampling, codecs, energy, VAD, endpointing, jitter buffer. No I/O."""

from parley.audio.frame import AudioFrame

__all__ = ["AudioFrame"]
