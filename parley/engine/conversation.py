"""What transports, live sessions and simulations use of a conversation, whichever engine runs it.

``Session`` (the pipeline: VAD, ASR, LLM, TTS) and ``SpeechToSpeechSession`` (one remote model hears and
speaks) both satisfy ``ConversationEngine``; ``open_session`` picks the class by the agent's ``mode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from parley.audio.frame import AudioFrame
from parley.engine.agent import AgentConfig
from parley.engine.context import ConversationContext
from parley.engine.events import TimelineSink
from parley.engine.options import EngineStack, SessionOptions
from parley.engine.state import SessionState, TurnState
from parley.engine.tools import ToolRegistry
from parley.engine.transport import AudioOutput

__all__ = ["Answering", "ConversationEngine", "open_session"]


@dataclass(frozen=True, slots=True)
class Answering:
    """The reply under way and the caller's words it answers (``None``: a line the agent says of its
    own, such as the greeting): what a client that comes back mid-answer is told is still coming."""

    reply_id: str
    text: str | None = None


class ConversationEngine(Protocol):
    id: str
    agent: AgentConfig
    stack: EngineStack
    output: AudioOutput
    timeline: TimelineSink
    options: SessionOptions
    context: ConversationContext
    """The conversation as the agent remembers it: only what the caller heard."""

    @property
    def state(self) -> SessionState: ...

    @property
    def turn(self) -> TurnState: ...

    @property
    def idle(self) -> bool: ...

    @property
    def handed_over(self) -> bool: ...

    @property
    def answering(self) -> Answering | None:
        """The reply under way, if the agent is answering (its audio may be held, not yet heard)."""
        ...

    def feed_audio(self, frame: AudioFrame) -> None: ...

    def send_text(self, text: str) -> None: ...

    def press_key(self, digit: str) -> None: ...

    def say(self, text: str, *, end_after: str | None = None) -> None: ...

    def interrupt(self) -> None: ...

    def hand_over(self, to: str) -> None: ...

    def take_back(self) -> None: ...

    def add_note(self, text: str, *, kind: str, by: str = "supervisor") -> None: ...

    def end(self, reason: str = "hangup") -> None: ...

    async def run(self) -> None: ...


def open_session(
    agent: AgentConfig,
    stack: EngineStack,
    output: AudioOutput,
    timeline: TimelineSink,
    tools: ToolRegistry | None = None,
    options: SessionOptions | None = None,
    session_id: str | None = None,
) -> ConversationEngine:
    """The session for ``agent``: the pipeline's, or the speech-to-speech one for ``mode:
    speech_to_speech`` (its stack then carries the ``s2s`` engine, see ``parley.stack.build_stack``)."""
    if agent.mode == "speech_to_speech":
        from parley.engine.speech_to_speech import SpeechToSpeechSession

        return SpeechToSpeechSession(agent, stack, output, timeline, tools, options, session_id)
    from parley.engine.session import Session

    return Session(agent, stack, output, timeline, tools, options, session_id)
