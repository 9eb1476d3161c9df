"""Speech recognition: push audio, get interim and final transcripts."""

from parley.providers.asr.base import RecognitionStream, SpeechRecognizer, Transcript

__all__ = ["RecognitionStream", "SpeechRecognizer", "Transcript"]
