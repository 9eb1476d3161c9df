"""What a session is made of: the models it uses and the options a transport sets."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from parley.audio.vad import VoiceActivityDetector
from parley.engine.knowledge import KnowledgeIndex
from parley.engine.reply import ReplySettings
from parley.engine.turns import EndOfTurnModel
from parley.engine.variables import CallVariables
from parley.providers.asr.base import SpeechRecognizer
from parley.providers.embeddings.base import SentenceEmbedder
from parley.providers.llm.base import LanguageModel
from parley.providers.s2s.base import SpeechToSpeechEngine
from parley.providers.tts.base import SpeechSynthesizer


@dataclass(frozen=True, slots=True)
class Voice:
    """A voice and the name the timeline gives it (``espeak:es``)."""

    name: str
    tts: SpeechSynthesizer


@dataclass(slots=True)
class EngineStack:
    """The models a session uses. Recognizer, LLM, TTS and turn model are shared; VADs are per session."""

    vad_factory: Callable[[], VoiceActivityDetector]
    recognizer: SpeechRecognizer
    llm: LanguageModel
    tts: SpeechSynthesizer
    turn_model: EndOfTurnModel | None = None
    embedder: SentenceEmbedder | None = None
    """For grounded agents: tells a question about something the agent does not know."""
    voice: str = ""
    """The name of ``tts`` on the timeline, when the agent's language chose it."""
    voices: Callable[[str], Voice] | None = None
    """For ``language: auto``: the voice of a detected language (blocking: it may load a model)."""
    s2s: SpeechToSpeechEngine | None = None
    """For ``mode: speech_to_speech``: the engine that hears and speaks (``SpeechToSpeechSession``);
    then ``recognizer`` only transcribes supervisors and ``llm``/``tts`` are stand-ins never asked."""


@dataclass(slots=True)
class SessionOptions:
    reply: ReplySettings = field(default_factory=ReplySettings)
    interim_interval_s: float | None = 0.6
    """Seconds of new speech between interim transcripts (None: no interims)."""
    inbound_max_frames: int = 500
    """Inbound queue bound. When full the oldest audio is dropped: keeping up with real time beats
    hearing stale audio, and each drop is reported on the timeline."""
    knowledge: KnowledgeIndex | None = None
    """The agent's documents, searched each turn (built once per agent, shared by its sessions)."""
    variables: CallVariables | None = None
    """This call's values for ``{{caller.name}}``, ``{{metadata.…}}`` in the agent's prompts."""
