"""Speech-to-speech engines: caller audio in, agent speech out, from one remote model."""

from parley.providers.s2s.base import S2SConnection, S2SSetup, SpeechToSpeechEngine

__all__ = ["S2SConnection", "S2SSetup", "SpeechToSpeechEngine"]
