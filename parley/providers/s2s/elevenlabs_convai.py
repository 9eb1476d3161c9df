"""ElevenLabs Conversational AI ("Agents") as a speech-to-speech engine, on its documented WebSocket.

Why not the SDK's conversation client: ``elevenlabs.conversational_ai.conversation.AsyncConversation`` runs
its own receive loop around a local audio interface and callbacks, polls the socket with 0.5 s timeouts,
runs client tools on a thread (or loop) of its own and sends their results from fire-and-forget tasks, and
logs a refused or broken connection instead of raising. It also hides what Parley needs: the ``event_id``
of each audio chunk (which turn it answers, so an interrupted turn's late audio is dropped) and the audio
formats of the initiation metadata. So the conversation is spoken here with ``websockets``; the official
SDK's async REST client still signs it (``conversational_ai.conversations.get_signed_url``).

The protocol (ElevenLabs docs "Agents Platform → WebSocket" and "Client events"; the AsyncAPI contract the
official clients are generated from, elevenlabs/packages ``packages/types/schemas/agent.asyncapi.yaml``):
- connect: with a key, ``GET /v1/convai/conversation/get-signed-url?agent_id=…`` (``xi-api-key``) and then
  the signed ``wss`` URL it returns; without one, ``wss://…/v1/convai/conversation?agent_id=…`` (a public
  agent).
- the client speaks first: ``conversation_initiation_client_data`` with ``conversation_config_override``
  (``agent.prompt.prompt``, ``agent.first_message``, ``agent.language``, ``tts.voice_id``: each must be
  allowed in the agent's security settings, or the server closes with 1008) and ``dynamic_variables``; the
  server answers ``conversation_initiation_metadata`` with the agent's audio formats (``pcm_16000`` unless
  the agent says otherwise; ``ulaw_8000`` and other PCM rates are converted here).
- audio: ``{"user_audio_chunk": base64}`` in; ``audio`` events out, each with the ``event_id`` of the turn it
  answers and, on current servers, a character ``alignment``. ``ping`` is answered at once with a ``pong``
  of its ``event_id``.

How it maps onto ``parley.providers.s2s.base``:
- A response is the agent's output for one ``event_id`` up to a tool call: its ``agent_response`` texts (one
  item each; the audio after one belongs to it) and their audio. The words reach the session as the audio
  carries them (the alignment's characters; the whole text with the first audio when there is no
  alignment), so what it records as heard matches what was played.
- ElevenLabs sends no end-of-response event. A response is done once its audio carried all of its text and
  nothing more came for ``ALIGNED_GRACE_S`` (a silent tail after the last word is dropped); when the next
  turn begins; on ``agent_response_complete`` (some agents send it); or, without alignment, after
  ``end_of_reply_s`` without more of it (the operator's PARLEY_ELEVENLABS_CONVAI_END_OF_REPLY_MS).
- Tools: ``client_tool_call`` → ``ToolCallRequest`` → the session runs the Parley tool of that name →
  ``client_tool_result``. The call ends its response (as a function call ends an OpenAI response) once the
  words before it are all received; the answer after the result is the next response, which the session
  plays as the same reply; while the agent thinks over a result, ``after_tool_s`` applies. Each Parley tool
  must exist as a client tool (same name and parameters, "wait for response" on) in the ElevenLabs agent:
  tools cannot be set from here.
- Barge-in: the server decides interruptions from the caller's audio and truncates its own memory of the
  reply (``interruption``, then ``agent_response_correction``): that becomes ``Interrupted``, and the turn's
  late audio is dropped. Caller speech is ``SpeechStarted`` / ``SpeechStopped`` (from the tentative and
  final transcripts, or ``vad_score`` when the agent sends it, placed by the energy of the audio sent),
  held back while the agent is audible so that the server, not this side, decides whether the caller
  interrupted. An interruption Parley decides (a stop button, a typed message, a person taking the call)
  cannot be sent as such: the rest of that response is dropped and the agent is told in a
  ``contextual_update`` what the caller heard of it.
- Supervisor notes and holds are ``contextual_update``s; a typed message is a ``user_message``; ``say`` is a
  ``user_message`` asking for the exact words (the protocol has no out-of-band reply).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit, urlunsplit

import numpy as np
import structlog

from parley.audio.codecs import ulaw_decode, ulaw_encode
from parley.audio.frame import PCM16
from parley.audio.resample import Resampler
from parley.providers.errors import ProviderUnavailable
from parley.providers.s2s.base import (
    AgentAudio,
    AgentTranscript,
    EngineError,
    Interrupted,
    ResponseDone,
    S2SEvent,
    S2SSetup,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequest,
    UserTranscript,
    server_text,
)

log = structlog.get_logger("parley.providers.s2s.elevenlabs_convai")

RATE = 16000
"""Parley's side of the connection; the agent's own formats are converted to and from it."""
FORMAT_RATES = {
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
    "pcm_48000": 48000,
    "ulaw_8000": 8000,
}
"""The contract's ``AudioFormat`` values."""
VOICED_DBFS = -40.0
"""Caller audio at least this loud counts as speech when placing the caller's turn in the audio sent."""
ALIGNED_GRACE_S = 0.25
"""Once a response's audio carried all its words: how long a tool call of the same turn may still come."""
RUN_GAP_MS = 1000.0
"""Silence that separates two runs of caller speech (a new run is a new onset)."""
VAD_SPEECH = 0.5
"""A ``vad_score`` (when the agent sends them) at least this high means the caller is speaking."""
MAX_MESSAGE = 16 * 1024 * 1024

OVERRIDES = frozenset({"prompt", "first_message", "language"})
"""What of the Parley agent a call may send over the ElevenLabs agent's own settings."""


@dataclass(slots=True)
class _Item:
    """One ``agent_response`` of a response and the audio after it."""

    id: str
    text: str = ""
    """The whole text (``agent_response`` comes with the first audio of it)."""
    said: str = ""
    """What of it the audio received so far carries: told to the session as it arrives."""
    aligned: bool = False
    """Its audio comes with a character alignment (then ``said`` follows the alignment)."""
    voiced_chars: int = 0
    audio_ms: float = 0.0


@dataclass(slots=True)
class _Response:
    """The agent's output for one turn (``event_id``), up to a tool call."""

    id: str
    event_id: int
    items: list[_Item] = field(default_factory=list)
    last_output: float = 0.0
    source_ms: float = 0.0
    """Audio received, at the agent's own rate (the alignment's clock)."""
    voiced_until_ms: float = 0.0
    """Where in that audio the last aligned character ends."""
    ending: bool = False
    """It made a tool call: it ends once the words before the call are all received."""

    def voiced(self) -> bool:
        """The alignment covers all of its text and the audio reached the last character."""
        texts = [item for item in self.items if item.text]
        if not texts or any(item.voiced_chars < _chars(item.text) for item in texts):
            return False
        return self.source_ms + 0.5 >= self.voiced_until_ms

    def item(self) -> _Item:
        if not self.items:
            self.items.append(_Item(f"{self.id}/0"))
        return self.items[-1]

    def heard(self, item_id: str | None, heard_ms: int) -> str:
        """The words heard: every item before ``item_id`` and the share of it played by ``heard_ms``
        (all of them without an ``item_id``)."""
        words: list[str] = []
        for item in self.items:
            if item.id != item_id:
                words.extend(item.said.split())
                continue
            said = item.said.split()
            if item.audio_ms > 0:
                words.extend(said[: int(len(said) * min(1.0, heard_ms / item.audio_ms))])
            break
        return " ".join(words)


class ElevenLabsConvaiEngine:
    """One ElevenLabs agent as Parley's speech-to-speech engine; ``connect`` once per call."""

    name = "elevenlabs_convai"
    model = "agents"
    input_rate = RATE
    output_rate = RATE

    def __init__(
        self,
        agent_id: str,
        *,
        api_key: str | None,
        base_url: str = "https://api.elevenlabs.io",
        overrides: frozenset[str] = OVERRIDES,
        voice_id: str | None = None,
        dynamic_variables: dict[str, str | int | float | bool] | None = None,
        timeout_s: float = 10.0,
        end_of_reply_s: float = 1.0,
        after_tool_s: float = 8.0,
    ) -> None:
        self.agent_id = agent_id
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        unknown = overrides - OVERRIDES
        if unknown:
            raise ValueError(f"unknown overrides {sorted(unknown)} (one of {sorted(OVERRIDES)})")
        self.overrides = overrides
        self.voice_id = voice_id
        self.dynamic_variables = dict(dynamic_variables or {})
        self.timeout_s = timeout_s
        self.end_of_reply_s = end_of_reply_s
        self.after_tool_s = after_tool_s

    def initiation(self, setup: S2SSetup) -> dict[str, Any]:
        """The ``conversation_initiation_client_data`` message for a call: only the overrides asked for."""
        agent: dict[str, Any] = {}
        if "prompt" in self.overrides and setup.instructions:
            agent["prompt"] = {"prompt": setup.instructions}
        if "first_message" in self.overrides and setup.first_message:
            agent["first_message"] = setup.first_message
        if "language" in self.overrides and setup.language:
            agent["language"] = setup.language
        override: dict[str, Any] = {"agent": agent} if agent else {}
        if self.voice_id:
            override["tts"] = {"voice_id": self.voice_id}
        message: dict[str, Any] = {
            "type": "conversation_initiation_client_data",
            "conversation_config_override": override,
        }
        if self.dynamic_variables:
            message["dynamic_variables"] = self.dynamic_variables
        return message

    async def connect(self, setup: S2SSetup) -> ElevenLabsConvaiConnection:
        """Sign (with a key), open the socket, send the initiation and wait for the metadata;
        ``ProviderUnavailable`` if any of it fails."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidHandshake, InvalidStatus, WebSocketException

        url = await self._conversation_url()
        try:
            async with asyncio.timeout(self.timeout_s):
                socket = await connect(url, max_size=MAX_MESSAGE, compression=None, open_timeout=None)
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise ProviderUnavailable(
                f"ElevenLabs refused the conversation (HTTP {status})", provider=self.name, status=status
            ) from exc
        except (OSError, TimeoutError, InvalidHandshake, WebSocketException) as exc:
            raise ProviderUnavailable(
                f"ElevenLabs Conversational AI is unreachable: {self.clean(repr(exc))}", provider=self.name
            ) from exc
        connection = ElevenLabsConvaiConnection(self, socket, setup)
        try:
            async with asyncio.timeout(self.timeout_s):
                await connection.open()
        except BaseException as exc:
            await connection.aclose()
            if isinstance(exc, ProviderUnavailable | asyncio.CancelledError):
                raise
            raise ProviderUnavailable(
                f"ElevenLabs conversation setup failed: {self.clean(repr(exc))}", provider=self.name
            ) from exc
        if setup.tools:
            log.debug(
                "elevenlabs convai: these Parley tools answer the agent's client tools of the same name",
                session_id=setup.session_id,
                tools=[tool.name for tool in setup.tools],
            )
        return connection

    @property
    def secrets(self) -> tuple[str | None, ...]:
        """What this engine sends that no error text may show."""
        return (self._api_key,)

    def clean(self, text: str) -> str:
        """Server text (or an exception quoting it), fit for an error: without the key, cut short."""
        return server_text(text, self.secrets)

    async def _conversation_url(self) -> str:
        """The signed URL of one conversation, or the public agent's URL when there is no key."""
        parts = urlsplit(self.base_url)
        if not self._api_key:
            scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
            query = urlencode({"agent_id": self.agent_id})
            return urlunsplit((scheme, parts.netloc, parts.path + "/v1/convai/conversation", query, ""))
        import httpx
        from elevenlabs.client import AsyncElevenLabs
        from elevenlabs.core.api_error import ApiError

        scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
        rest = urlunsplit((scheme, parts.netloc, parts.path, "", ""))
        try:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                client = AsyncElevenLabs(api_key=self._api_key, base_url=rest, httpx_client=http)
                signed = await client.conversational_ai.conversations.get_signed_url(
                    agent_id=self.agent_id, request_options={"max_retries": 0}
                )
        except ApiError as exc:
            status = exc.status_code
            reason = "refused the key" if status in (401, 403) else "does not serve this agent"
            raise ProviderUnavailable(
                f"ElevenLabs {reason} (HTTP {status}) for agent {self.agent_id}",
                provider=self.name,
                status=status,
            ) from exc
        except (httpx.HTTPError, OSError, ValueError) as exc:
            raise ProviderUnavailable(
                f"ElevenLabs could not sign the conversation: {self.clean(repr(exc))}", provider=self.name
            ) from exc
        url = str(signed.signed_url)
        if urlsplit(url).scheme not in ("wss", "ws"):
            raise ProviderUnavailable(
                "ElevenLabs returned a signed URL that is not a WebSocket", provider=self.name
            )
        return url


class ElevenLabsConvaiConnection:
    """One call on an ElevenLabs agent (``parley.providers.s2s.base.S2SConnection``)."""

    speaks_first_message = True
    """The first message goes in the initiation's override (or the agent has its own)."""

    def __init__(self, engine: ElevenLabsConvaiEngine, socket: Any, setup: S2SSetup) -> None:
        self._engine = engine
        self._socket = socket
        self._setup = setup
        self._send_lock = asyncio.Lock()
        self._early: deque[dict[str, Any]] = deque()
        """Messages read while waiting for the metadata: handled first by ``events``."""
        self._ready: deque[S2SEvent] = deque()
        self._closed = False
        self.conversation_id = ""
        self.output_format = "pcm_16000"
        self.input_format = "pcm_16000"
        self._out: Resampler | None = None
        self._in: Resampler | None = None
        self._open: _Response | None = None
        self._recent: deque[_Response] = deque(maxlen=8)
        """The latest responses, newest last: what an interruption or a cut refers to."""
        self._ids: dict[int, int] = {}
        """Responses opened per event id (a turn's output after its response was done opens another)."""
        self._stale_up_to = -1
        """Output of turns up to this event id was interrupted by the server: dropped."""
        self._dropped: set[int] = set()
        """Turns whose output Parley stopped: dropped."""
        self._spoken: set[int] = set()
        """Turns whose words were all received (by the alignment): more audio of them is a silent tail."""
        self._audible_until = 0.0
        """When the audio received so far would have finished playing (the server's view of "speaking")."""
        self._user_speaking = False
        self._held_back = False
        """The caller started speaking while the agent was audible: reported once the server decides."""
        self._sent_ms = 0.0
        self._voiced_from: float | None = None
        self._voiced_to: float | None = None
        self._calls = itertools.count(1)
        self._pending: dict[str, int] = {}
        """Tool calls waiting for their results (call id → event id of the turn that made them)."""
        self._answered: set[int] = set()
        """Turns whose tool results were sent and whose agent has said nothing since: it is thinking."""
        self._texted: set[int] = set()
        """Turns with words already: a later text of the turn carries on after a space."""

    # --- setup --------------------------------------------------------------------------------------

    async def open(self) -> None:
        from websockets.exceptions import ConnectionClosed

        await self._send(self._engine.initiation(self._setup))
        problem = ""
        while True:
            try:
                message = await self._read()
            except ConnectionClosed as exc:
                reason = problem or (exc.rcvd.reason if exc.rcvd is not None else "") or str(exc)
                code = exc.rcvd.code if exc.rcvd is not None else None
                raise ProviderUnavailable(
                    f"ElevenLabs closed the conversation during setup: {self._engine.clean(reason)}",
                    provider=self._engine.name,
                    status=code,
                ) from exc
            kind = message.get("type")
            if kind == "conversation_initiation_metadata":
                self._metadata(message.get("conversation_initiation_metadata_event") or {})
                return
            if kind == "ping":
                await self._pong(message)
            elif kind == "error":
                error = message.get("error_event") or {}
                problem = str(error.get("message") or error.get("reason") or error)
            else:
                self._early.append(message)

    def _metadata(self, event: dict[str, Any]) -> None:
        self.conversation_id = str(event.get("conversation_id", ""))
        for side in ("agent_output_audio_format", "user_input_audio_format"):
            value = str(event.get(side) or "pcm_16000")
            if value not in FORMAT_RATES:
                raise ProviderUnavailable(
                    f"ElevenLabs agent uses audio format {value!r}, which Parley cannot convert",
                    provider=self._engine.name,
                )
        self.output_format = str(event.get("agent_output_audio_format") or "pcm_16000")
        self.input_format = str(event.get("user_input_audio_format") or "pcm_16000")
        out_rate, in_rate = FORMAT_RATES[self.output_format], FORMAT_RATES[self.input_format]
        self._out = Resampler(out_rate, RATE) if out_rate != RATE else None
        self._in = Resampler(RATE, in_rate) if in_rate != RATE else None
        log.info(
            "elevenlabs convai: conversation started",
            session_id=self._setup.session_id,
            conversation_id=self.conversation_id,
            output_format=self.output_format,
            input_format=self.input_format,
        )

    # --- what the session sends ---------------------------------------------------------------------

    async def send_audio(self, pcm: PCM16) -> None:
        self._track_voice(pcm)
        if self._in is not None:
            pcm = self._in.process(pcm)
        if self.input_format == "ulaw_8000":
            data = ulaw_encode(pcm)
        else:
            data = np.asarray(pcm, dtype="<i2").tobytes()
        if data:
            await self._send({"user_audio_chunk": base64.b64encode(data).decode("ascii")})

    async def send_text(self, text: str) -> None:
        await self._send({"type": "user_message", "text": text})

    async def say(self, text: str) -> None:
        instruction = (
            "[An instruction from the call's operator, not words of the caller] Say exactly the following "
            f"to the caller, word for word, and nothing else: {text}"
        )
        await self._send({"type": "user_message", "text": instruction})

    async def add_note(self, text: str) -> None:
        await self._send({"type": "contextual_update", "text": text})

    async def interrupt(self, item_id: str | None, heard_ms: int) -> None:
        """Parley stopped the agent (the server did not): drop the rest of the turn and tell the agent
        what the caller heard of it, as the server would have kept had it decided the interruption."""
        if item_id is None:
            response = self._open
        else:
            response = next((r for r in self._recent if item_id.startswith(r.id + "/")), None)
        if response is None:
            return
        if response is self._open:
            self._dropped.add(response.event_id)
            self._open = None
            self._audible_until = 0.0
            if self._out is not None:
                self._out.reset()
        said = response.heard(item_id, heard_ms) if item_id is not None else ""
        whole = " ".join(word for item in response.items for word in (item.text or item.said).split())
        if said and said == whole:
            return  # all of it was heard: nothing to correct
        if said:
            note = f'Your last reply was cut off: the caller heard only "{said}" and nothing after it.'
        else:
            note = "The caller did not hear your last reply."
        await self._send({"type": "contextual_update", "text": note})

    async def tool_result(self, call_id: str, output: str, *, is_error: bool = False) -> None:
        event_id = self._pending.pop(call_id, None)
        if event_id is not None:  # before sending: the agent's answer may be quick
            self._answered.add(event_id)
            if self._open is not None and self._open.event_id == event_id:
                self._open.last_output = time.monotonic()
        await self._send(
            {"type": "client_tool_result", "tool_call_id": call_id, "result": output, "is_error": is_error}
        )

    async def hold(self, on: bool) -> None:
        if on:
            note = (
                "A person from the team has taken over this call. Keep listening, but do not speak or "
                "answer until you are told the call is back with you."
            )
        else:
            note = "The call is back with you: answer the caller again."
        await self._send({"type": "contextual_update", "text": note})

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):  # a socket that is already gone needs no closing
            await self._socket.close()

    # --- what the provider says ---------------------------------------------------------------------

    async def events(self) -> AsyncIterator[S2SEvent]:
        """``S2SEvent``s until the server ends the conversation (``ProviderUnavailable`` if it breaks)."""
        from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

        while True:
            while self._ready:
                yield self._ready.popleft()
            if self._early:
                await self._handle(self._early.popleft())
                continue
            try:
                async with asyncio.timeout(self._wait()):
                    message = await self._read()
            except TimeoutError:
                self._finish("completed")
                continue
            except ConnectionClosedOK:
                self._finish("completed")
                while self._ready:
                    yield self._ready.popleft()
                return
            except ConnectionClosed as exc:
                frame = exc.rcvd
                reason = frame.reason if frame is not None else str(exc)
                raise ProviderUnavailable(
                    f"ElevenLabs conversation lost: {self._engine.clean(reason)}",
                    provider=self._engine.name,
                    status=frame.code if frame is not None else None,
                ) from exc
            await self._handle(message)

    def _wait(self) -> float | None:
        """Seconds until the open response counts as done for want of more of it (None: no deadline)."""
        response = self._open
        if response is None or response.event_id in self._pending.values() or not response.last_output:
            return None
        if response.event_id in self._answered:
            quiet = self._engine.after_tool_s
        elif response.voiced():  # all its words arrived: wait only for a tool call (or a silent tail)
            quiet = min(self._engine.end_of_reply_s, ALIGNED_GRACE_S)
        else:
            quiet = self._engine.end_of_reply_s
        return max(0.0, response.last_output + quiet - time.monotonic())

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "ping":
            await self._pong(message)
        elif kind == "audio":
            self._on_audio(message.get("audio_event") or {})
        elif kind == "agent_response":
            event = message.get("agent_response_event") or {}
            self._on_agent_text(str(event.get("agent_response") or ""), _event_id(event))
        elif kind == "client_tool_call":
            self._on_tool_call(message.get("client_tool_call") or {})
        elif kind == "interruption":
            self._on_interruption(_event_id(message.get("interruption_event") or {}))
        elif kind in ("tentative_user_transcript", "vad_score"):
            if kind == "vad_score":
                score = (message.get("vad_score_event") or {}).get("vad_score")
                if not isinstance(score, int | float) or score < VAD_SPEECH:
                    return
            self._on_caller_speaking()
        elif kind == "user_transcript":
            event = message.get("user_transcription_event") or {}
            self._on_user_transcript(str(event.get("user_transcript") or ""), _event_id(event))
        elif kind == "agent_response_complete":
            self._finish("completed")
        elif kind == "agent_response_correction":
            event = message.get("agent_response_correction_event") or {}
            log.debug(
                "elevenlabs convai: the agent keeps its interrupted reply as heard",
                session_id=self._setup.session_id,
                kept=event.get("corrected_agent_response"),
            )
        elif kind == "error":
            error = message.get("error_event") or {}
            self._ready.append(
                EngineError(
                    str(error.get("message") or error.get("reason") or "error"),
                    str(error.get("error_type") or error.get("code") or ""),
                    secrets=self._engine.secrets,
                )
            )

    def _response(self, event_id: int | None) -> _Response | None:
        """The response output of turn ``event_id`` belongs to (opening it), or None when it is dropped."""
        open_ = self._open
        if event_id is None:  # an older server without event ids: whatever is open, or a new one
            event_id = open_.event_id if open_ is not None else max(self._ids, default=0) + 1
        if event_id <= self._stale_up_to or event_id in self._dropped:
            return None
        if open_ is not None and open_.event_id == event_id:
            return open_
        if open_ is not None:
            self._finish("completed")
        count = self._ids.get(event_id, 0)
        self._ids[event_id] = count + 1
        response = _Response(f"el{event_id}" + (f".{count}" if count else ""), event_id)
        self._open = response
        self._recent.append(response)
        if self._user_speaking:  # the agent answers: the caller's turn is over
            self._user_speaking = self._held_back = False
        return response

    def _on_agent_text(self, text: str, event_id: int | None) -> None:
        """The whole text of what the agent is about to say: told to the session as its audio carries it
        (by the alignment; all at once with the first audio when there is none), so the words the session
        holds always match the audio it has."""
        open_ = self._open
        if open_ is not None and open_.ending and (event_id is None or open_.event_id == event_id):
            self._end_at_call(open_)  # the answer after the call: the next response
        response = self._response(event_id)
        if response is None or not text.strip():
            return
        item = response.item()
        if item.text or item.said or item.audio_ms:  # a later text of the turn: a new item
            item = _Item(f"{response.id}/{len(response.items)}")
            response.items.append(item)
        item.text = text
        self._answered.discard(response.event_id)
        response.last_output = time.monotonic()

    def _on_audio(self, event: dict[str, Any]) -> None:
        event_id = _event_id(event)
        if event_id is not None and event_id in self._spoken and self._open is None:
            return  # the tail of a turn whose words were all heard already (silence after the last one)
        response = self._response(event_id)
        if response is None:
            return
        raw = self._decode(str(event.get("audio_base_64") or ""))
        offset_ms = response.source_ms
        response.source_ms += len(raw) * 1000 / FORMAT_RATES[self.output_format]
        pcm = self._out.process(raw) if self._out is not None else raw
        item = response.item()
        alignment = event.get("alignment")
        if isinstance(alignment, dict):
            chars = [str(c) for c in alignment.get("chars") or []]
            starts = alignment.get("char_start_times_ms") or []
            lengths = alignment.get("char_durations_ms") or []
            item.aligned = True
            item.voiced_chars += sum(_chars(c) for c in chars)
            ends = [
                offset_ms + float(start) + float(length)
                for start, length in zip(starts, lengths, strict=False)
                if isinstance(start, int | float) and isinstance(length, int | float)
            ]
            response.voiced_until_ms = max([response.voiced_until_ms, *ends])
            self._say(response, item, "".join(chars))
        elif not item.aligned and item.text and not item.said:
            self._say(response, item, item.text)
        response.last_output = time.monotonic()
        if len(pcm):
            seconds = len(pcm) / RATE
            item.audio_ms += seconds * 1000
            self._audible_until = max(self._audible_until, time.monotonic()) + seconds
            self._ready.append(AgentAudio(pcm, item.id, response.id))
        if response.ending and response.voiced():
            self._end_at_call(response)

    def _say(self, response: _Response, item: _Item, words: str) -> None:
        if not words:
            return
        new_text = item.text and not item.said and response.event_id in self._texted
        if new_text and not words[0].isspace():
            words = " " + words  # a later text of the turn goes on from the earlier ones
        self._texted.add(response.event_id)
        item.said += words
        self._ready.append(AgentTranscript(words, item.id, response.id))

    def _on_tool_call(self, call: dict[str, Any]) -> None:
        """A client tool call ends the response that made it (as a function call ends an OpenAI response)
        once the words before it are all received: what the turn says after it is the next response."""
        response = self._response(_event_id(call))
        if response is None:
            return
        call_id = str(call.get("tool_call_id") or f"call_{next(self._calls)}")
        parameters = call.get("parameters")
        self._pending[call_id] = response.event_id
        self._answered.discard(response.event_id)
        arguments = json.dumps(parameters if isinstance(parameters, dict) else {})
        self._ready.append(ToolCallRequest(call_id, str(call.get("tool_name") or ""), arguments, response.id))
        response.ending = True
        if response.voiced() or not any(item.aligned for item in response.items):
            self._end_at_call(response)

    def _end_at_call(self, response: _Response) -> None:
        self._finish("completed")
        self._spoken.discard(response.event_id)  # the turn goes on after the call

    def _on_interruption(self, event_id: int | None) -> None:
        """The server heard the caller over the agent: it stopped that turn and keeps what was heard. The
        turn may be all received (and still playing here) or still arriving."""
        response = self._open or (self._recent[-1] if self._recent else None)
        if event_id is None:
            event_id = response.event_id if response is not None else self._stale_up_to
        self._stale_up_to = max(self._stale_up_to, event_id)
        self._audible_until = 0.0
        interrupted = [r for r in self._recent if r.event_id == event_id]
        if interrupted:
            self._ready.append(Interrupted(interrupted[-1].id))
        if self._open is not None and self._open.event_id <= event_id:
            self._finish("cancelled")
        if self._held_back:
            self._held_back = False
            self._ready.append(SpeechStarted(_ms(self._voiced_from)))

    def _on_caller_speaking(self) -> None:
        if self._user_speaking:
            return
        self._user_speaking = True
        if time.monotonic() < self._audible_until:
            self._held_back = True  # the server decides whether this interrupts the agent
            return
        self._ready.append(SpeechStarted(_ms(self._voiced_from)))

    def _on_user_transcript(self, text: str, event_id: int | None) -> None:
        if self._open is not None and (event_id is None or self._open.event_id != event_id):
            self._finish("completed")
        if not self._user_speaking or self._held_back:
            self._ready.append(SpeechStarted(_ms(self._voiced_from)))
        self._ready.append(SpeechStopped(_ms(self._voiced_to)))
        self._ready.append(UserTranscript(text, f"user{event_id}" if event_id is not None else ""))
        self._user_speaking = self._held_back = False
        self._voiced_from = self._voiced_to = None

    def _finish(self, status: Literal["completed", "cancelled"]) -> None:
        """The open response is over: the tail of the converter's audio, then ``ResponseDone``."""
        response, self._open = self._open, None
        if response is None:
            return
        if response.voiced():
            self._spoken.add(response.event_id)
        if status == "completed":  # words that came without audio (a text-only answer)
            for item in response.items:
                if item.text and not item.said:
                    self._say(response, item, item.text)
        if self._out is not None:
            tail = self._out.flush()
            if status == "completed" and len(tail):
                self._ready.append(AgentAudio(tail, response.item().id, response.id))
        self._ready.append(ResponseDone(response.id, status))

    # --- audio --------------------------------------------------------------------------------------

    def _decode(self, data: str) -> PCM16:
        """The agent's audio as PCM16 at its own rate."""
        raw = base64.b64decode(data)
        if self.output_format == "ulaw_8000":
            return ulaw_decode(raw)
        return np.frombuffer(raw[: len(raw) // 2 * 2], dtype="<i2").astype(np.int16)

    def _track_voice(self, pcm: PCM16) -> None:
        """Where in the audio sent the caller's latest run of speech began and last sounded (ms): where
        the server's turn events fall on the call's clock."""
        start = self._sent_ms
        self._sent_ms += len(pcm) * 1000 / RATE
        if not len(pcm):
            return
        level = 20 * np.log10(np.sqrt(np.mean((pcm.astype(np.float64) / 32768.0) ** 2)) + 1e-12)
        if level < VOICED_DBFS:
            return
        gap = start - self._voiced_to if self._voiced_to is not None else None
        if self._voiced_from is None or (not self._user_speaking and gap is not None and gap > RUN_GAP_MS):
            self._voiced_from = start
        self._voiced_to = self._sent_ms

    # --- plumbing -----------------------------------------------------------------------------------

    async def _pong(self, message: dict[str, Any]) -> None:
        event_id = (message.get("ping_event") or {}).get("event_id")
        await self._send({"type": "pong", "event_id": event_id})

    async def _send(self, message: dict[str, Any]) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async with self._send_lock:
                await self._socket.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise ProviderUnavailable(
                f"ElevenLabs conversation closed: {self._engine.clean(str(exc))}",
                provider=self._engine.name,
            ) from exc

    async def _read(self) -> dict[str, Any]:
        raw = await self._socket.recv()
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("elevenlabs convai: a message that is not JSON", size=len(raw))
            return {}
        return message if isinstance(message, dict) else {}


def _event_id(event: dict[str, Any]) -> int | None:
    value = event.get("event_id")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _chars(text: str) -> int:
    return sum(1 for c in text if not c.isspace())


def _ms(position: float | None) -> int | None:
    return None if position is None else round(position)
