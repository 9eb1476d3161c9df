"""Speech synthesis: text in, a stream of PCM16 chunks out."""

from parley.providers.tts.base import SpeechSynthesizer

__all__ = ["SpeechSynthesizer"]
