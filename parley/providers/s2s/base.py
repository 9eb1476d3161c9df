"""Speech-to-speech engines: one remote model hears the caller and answers in speech (OpenAI Realtime,
ElevenLabs Conversational AI), in place of the ASR → LLM → TTS pipeline.

The Protocol, in short (an adapter implements exactly this; ``SpeechToSpeechSession`` in
``parley/engine/speech_to_speech.py`` does everything else — pacing, barge-in, tools, timeline):

- ``SpeechToSpeechEngine``: ``name``, ``model`` (for costs), ``input_rate`` / ``output_rate`` (mono
  PCM16 in and out), and ``await connect(setup) -> S2SConnection`` for one call. ``connect`` raises
  ``ProviderUnavailable`` when the provider cannot be reached or refuses the key.
- ``S2SSetup``: what the call starts with — instructions (the rendered system prompt), the tools
  (``ToolSpec``: name, description, JSON schema), the first message, the language, the session id.
- ``S2SConnection``, the live call:
  ``events()`` — an async iterator of the events below, ending when the provider closes;
  ``send_audio(pcm)`` — caller audio at ``input_rate`` (never blocks for long: small frames);
  ``send_text(text)`` — a typed user message, answered; ``say(text)`` — have the agent say these words;
  ``add_note(text)`` — context for the next replies (a supervisor's whisper), not answered;
  ``interrupt(item_id, heard_ms)`` — barge-in: stop the response and forget what was not heard
  (``heard_ms`` of the item's audio were played; an engine whose server decides interruptions itself
  may ignore it); ``tool_result(call_id, output, is_error)`` — the answer to a ``ToolCallRequest`` (the
  adapter continues the response once every call of it has its answer);
  ``hold(on)`` — while on, the engine hears and remembers but answers nobody (a person has the call);
  ``aclose()``.
- Events (all frozen dataclasses, ``S2SEvent``): ``SpeechStarted`` / ``SpeechStopped`` (the provider's
  voice activity on the caller's audio, ``at_ms`` into the audio sent), ``UserTranscript`` (the caller's
  turn, final), ``AgentAudio`` (PCM16 at ``output_rate`` for an item of a response), ``AgentTranscript``
  (words of that audio, a delta), ``ToolCallRequest``, ``ResponseDone`` (status and token usage),
  ``Interrupted`` (the provider itself decided the agent was talked over), ``EngineError``.

Errors: whatever a provider's server says reaches logs, the timeline and the API, and a server may quote
the credentials it was sent. ``EngineError`` cleans its text itself and needs the adapter's key to do so;
an adapter that puts server text in an exception passes it through ``server_text`` first.

Ids (``item_id``, ``response_id``, ``call_id``) are whatever the provider uses, or stable ones the adapter
makes up where it has none.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import KW_ONLY, InitVar, dataclass
from typing import Literal, Protocol

from parley.audio.frame import PCM16
from parley.providers.llm.base import ToolSpec
from parley.redaction import excerpt

__all__ = [
    "ERROR_CHARS",
    "AgentAudio",
    "AgentTranscript",
    "EngineError",
    "Interrupted",
    "ResponseDone",
    "S2SConnection",
    "S2SEvent",
    "S2SSetup",
    "S2SUsage",
    "SpeechStarted",
    "SpeechStopped",
    "SpeechToSpeechEngine",
    "ToolCallRequest",
    "UserTranscript",
    "server_text",
]

ERROR_CHARS = 300
"""How much of a provider's error text is passed on (an error code: ``CODE_CHARS``)."""
CODE_CHARS = 100


def server_text(text: str, secrets: Iterable[str | None], limit: int = ERROR_CHARS) -> str:
    """What a provider's server said, fit to pass on: the known ``secrets`` (the adapter's key) and
    anything shaped like a credential removed, and only then cut to ``limit`` — cut first, a key across
    the limit would no longer match and its first characters would be shown."""
    return excerpt(text, limit, [secret for secret in secrets if secret])


@dataclass(frozen=True, slots=True)
class S2SSetup:
    instructions: str
    tools: tuple[ToolSpec, ...] = ()
    first_message: str | None = None
    """Said as the call opens (the session asks for it with ``say`` unless the adapter sends it in its
    setup and says so with ``speaks_first_message``)."""
    language: str | None = None
    """ISO 639-1 code of the call's language, when the agent sets one."""
    interruptible: bool = True
    """The caller may talk over the agent (barge-in); off: the provider should not stop a response when
    the caller speaks (OpenAI ``interrupt_response: false``)."""
    session_id: str = ""
    """For logs and the provider's own tracing."""


@dataclass(frozen=True, slots=True)
class S2SUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    cached_tokens: int = 0


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    at_ms: int | None = None
    """Where in the audio sent so far the caller started speaking (provider's VAD), if it says."""


@dataclass(frozen=True, slots=True)
class SpeechStopped:
    at_ms: int | None = None


@dataclass(frozen=True, slots=True)
class UserTranscript:
    text: str
    item_id: str = ""


@dataclass(frozen=True, slots=True)
class AgentAudio:
    pcm: PCM16
    item_id: str
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class AgentTranscript:
    text: str
    """A delta: the next words of the item's audio."""
    item_id: str
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolCallRequest:
    call_id: str
    name: str
    arguments: str
    """The arguments as the model wrote them (JSON text; the session parses and validates)."""
    response_id: str = ""


@dataclass(frozen=True, slots=True)
class ResponseDone:
    response_id: str
    status: Literal["completed", "cancelled", "failed", "incomplete"] = "completed"
    usage: S2SUsage | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """The provider decided on its own that the caller talked over the agent (ElevenLabs ``interruption``)."""

    response_id: str = ""


@dataclass(frozen=True, slots=True)
class EngineError:
    """An error the provider reported on a live connection. Its text is the server's, so it is cleaned
    here, where every adapter's errors pass, rather than by each adapter."""

    message: str
    code: str = ""
    fatal: bool = False
    """The connection is unusable: the session ends the call (or the failover layer takes over)."""
    _: KW_ONLY
    secrets: InitVar[Iterable[str | None]]
    """The credentials the adapter sent (its API key; ``()`` with none), kept out of ``message`` and
    ``code``. Required, so that no adapter can forget them."""

    def __post_init__(self, secrets: Iterable[str | None]) -> None:
        known = tuple(secrets)
        object.__setattr__(self, "message", server_text(self.message, known))
        object.__setattr__(self, "code", server_text(self.code, known, CODE_CHARS))


S2SEvent = (
    SpeechStarted
    | SpeechStopped
    | UserTranscript
    | AgentAudio
    | AgentTranscript
    | ToolCallRequest
    | ResponseDone
    | Interrupted
    | EngineError
)


class S2SConnection(Protocol):
    """One call's live connection to a speech-to-speech engine (see the module docstring)."""

    speaks_first_message: bool
    """The provider says ``S2SSetup.first_message`` itself (then the session does not ``say`` it)."""

    def events(self) -> AsyncIterator[S2SEvent]: ...

    async def send_audio(self, pcm: PCM16) -> None: ...

    async def send_text(self, text: str) -> None: ...

    async def say(self, text: str) -> None: ...

    async def add_note(self, text: str) -> None: ...

    async def interrupt(self, item_id: str | None, heard_ms: int) -> None: ...

    async def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> None: ...

    async def hold(self, on: bool) -> None: ...

    async def aclose(self) -> None: ...


class SpeechToSpeechEngine(Protocol):
    """A speech-to-speech provider, shared by every session of an agent; one ``connect`` per call."""

    name: str
    model: str
    input_rate: int
    output_rate: int

    async def connect(self, setup: S2SSetup) -> S2SConnection: ...
