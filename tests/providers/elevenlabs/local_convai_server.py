"""A local server that speaks ElevenLabs' Conversational AI ("Agents") WebSocket protocol, for tests.

It stands in for the service, not for the adapter: it checks what a client sends and answers with the
documented shapes. Where each shape comes from:

- Signing: ``GET /v1/convai/conversation/get-signed-url?agent_id=…`` with the ``xi-api-key`` header answers
  ``{"signed_url": "wss://…/v1/convai/conversation?agent_id=…&conversation_signature=…"}`` (docs
  "Agents Platform → Authentication → Using signed URLs"; the path as the official Python SDK requests it,
  ``elevenlabs/conversational_ai/conversations/raw_client.py``). A wrong key is a 401 with the REST API's
  ``detail`` body; an agent the key does not have is a 404 (the SDK raises ``ApiError`` for either).
- The socket: ``/v1/convai/conversation?agent_id=…`` (elevenlabs-docs ``fern/apis/convai/asyncapi.yml``);
  an agent that requires authentication refuses a connection without a valid signature.
- Client messages (elevenlabs/packages ``packages/types/schemas/agent.asyncapi.yaml``, the AsyncAPI contract
  the official clients are generated from): the first is ``conversation_initiation_client_data`` with
  ``conversation_config_override`` (``agent.prompt.prompt``, ``agent.first_message``, ``agent.language``,
  ``tts.voice_id`` …) and ``dynamic_variables``; then ``{"user_audio_chunk": base64}`` (no ``type``),
  ``pong`` (``event_id`` of the ping), ``client_tool_result`` (``tool_call_id``, ``result`` string,
  ``is_error``), ``contextual_update`` (``text``), ``user_message`` (``text``), ``user_activity``.
- Server messages (same contract): ``conversation_initiation_metadata`` (``conversation_id``,
  ``agent_output_audio_format``, ``user_input_audio_format``), ``ping`` (``event_id``, ``ping_ms``),
  ``tentative_user_transcript`` and ``user_transcript`` (``user_transcript``, ``event_id``),
  ``agent_response`` (``agent_response``, ``event_id``; the docs' "Client events" page: "sent with the first
  audio chunk"), ``audio`` (``audio_base_64``, ``event_id`` of the turn, optional ``alignment`` with
  ``chars``, ``char_start_times_ms``, ``char_durations_ms`` relative to the chunk), ``interruption``
  (``event_id`` of the interrupted turn) followed by ``agent_response_correction`` (original and
  truncated text: what ElevenLabs keeps), ``client_tool_call`` (``tool_name``, ``tool_call_id``,
  ``parameters``, ``event_id``), ``agent_response_complete`` (listed in the SDK's
  ``elevenlabs/types/client_event.py``; sent only when ``send_complete``).
- Errors: an ``error`` message (``error_event``: ``code``, ``message``, ``error_type``) then a close with that
  code; an override the agent does not allow is closed with 1008 "Override for field '…' is not allowed
  by config." (``error_type: override_error``; elevenlabs/packages#23 reports this close).

Deterministic: its voice activity detection is an energy threshold on 20 ms frames; it "transcribes" each
user turn as the next line of ``transcripts``, answers by ``Rule``s, and speaks a tone ``ms_per_word`` per
word, sent ``speed`` times faster than real time, as the service sends audio ahead of playback. It judges
what the caller heard by wall-clock time since its first audio chunk, as if played in real time.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from parley.audio.codecs import ulaw_decode, ulaw_encode

FORMATS = {
    "pcm_8000": 8000,
    "pcm_16000": 16000,
    "pcm_22050": 22050,
    "pcm_24000": 24000,
    "pcm_44100": 44100,
    "pcm_48000": 48000,
    "ulaw_8000": 8000,
}
VOICED_DBFS = -35.0
SPEECH_START_MS = 60
OVERRIDABLE = {"agent.prompt.prompt", "agent.first_message", "agent.language", "tts.voice_id"}
"""Override fields the contract defines (``ConversationConfigClientOverride``) that this server knows."""


@dataclass(frozen=True, slots=True)
class Rule:
    """When a user turn contains ``pattern``: say ``reply``, then (with ``tool``) call that client tool and
    say ``after_tool`` (``{output}`` is the tool's result)."""

    pattern: str
    reply: str = ""
    tool: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    after_tool: str = "Done: {output}"


@dataclass(slots=True)
class _Turn:
    """One agent response: its words, when its audio began and how long it is."""

    event_id: int
    text: str = ""
    task: asyncio.Task[None] | None = None
    first_audio_at: float | None = None
    audio_s: float = 0.0
    word_starts: list[tuple[float, str]] = field(default_factory=list)
    """(offset in seconds into the response's audio, word) for every word spoken so far."""
    interrupted: bool = False

    def speaking(self) -> bool:
        if self.interrupted:
            return False
        if self.task is not None and not self.task.done():
            return True
        return self.first_audio_at is not None and time.monotonic() < self.first_audio_at + self.audio_s

    def heard(self) -> str:
        """The words whose audio began before now, played from the first chunk in real time."""
        if self.first_audio_at is None:
            return ""
        elapsed = time.monotonic() - self.first_audio_at
        return " ".join(word for start, word in self.word_starts if start <= elapsed)


class LocalConvai:
    def __init__(
        self,
        transcripts: list[str],
        rules: list[Rule],
        *,
        api_key: str = "xi-local-test",
        agent_id: str = "agent_local_0001",
        requires_auth: bool = True,
        first_message: str = "",
        allowed_overrides: frozenset[str] = frozenset(OVERRIDABLE),
        output_format: str = "pcm_16000",
        input_format: str = "pcm_16000",
        ms_per_word: int = 250,
        speed: float = 4.0,
        chunk_ms: int = 40,
        silence_ms: int = 300,
        alignment: bool = True,
        send_complete: bool = False,
        ping_every_s: float | None = None,
        fail_on: str | None = None,
        default_reply: str = "Sorry, I did not catch that.",
    ) -> None:
        self.transcripts = list(transcripts)
        self.rules = rules
        self.api_key = api_key
        self.agent_id = agent_id
        self.requires_auth = requires_auth
        self.first_message = first_message
        self.allowed_overrides = allowed_overrides
        self.output_format = output_format
        self.input_format = input_format
        self.ms_per_word = ms_per_word
        self.speed = speed
        self.chunk_ms = chunk_ms
        self.silence_ms = silence_ms
        self.alignment = alignment
        self.send_complete = send_complete
        self.ping_every_s = ping_every_s
        self.fail_on = fail_on
        """A user turn containing this fails as the service's LLM does (``llm_error``, closed 1002)."""
        self.default_reply = default_reply
        self.url = ""
        self.refused: list[int] = []
        """HTTP statuses of refused requests, in order."""
        self.signed: list[dict[str, str]] = []
        """The query of each get-signed-url request answered."""
        self.initiations: list[dict[str, Any]] = []
        """Each connection's ``conversation_initiation_client_data``."""
        self.received: list[dict[str, Any]] = []
        """Every client message but audio chunks, in order."""
        self.audio_ms = 0.0
        """Caller audio received, in ms."""
        self.problems: list[str] = []
        """What a client did against the protocol (tests assert there is none)."""
        self.pings: list[int] = []
        self.pongs: list[int] = []
        self.transcript: list[tuple[str, str]] = []
        """The conversation as the service keeps it: interrupted replies as corrected (what was heard)."""
        self.connections = 0
        self.closed = asyncio.Event()
        self._server: Server | None = None
        self._tokens: set[str] = set()
        self._ids = itertools.count(1)

    # --- lifecycle ----------------------------------------------------------------------------------

    async def __aenter__(self) -> LocalConvai:
        self._server = await serve(
            self._handle, "127.0.0.1", 0, process_request=self._check_request, compression=None
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def sent_types(self) -> list[str]:
        return [str(m.get("type")) for m in self.received]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("type") == kind]

    # --- HTTP: the signed URL, and the socket's handshake -------------------------------------------

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/v1/convai/conversation/get-signed-url":
            return self._sign(connection, request, query)
        if url.path != "/v1/convai/conversation":
            return self._refuse(connection, HTTPStatus.NOT_FOUND, {"detail": "Not Found"})
        if query.get("agent_id") != self.agent_id:
            return self._refuse(
                connection,
                HTTPStatus.NOT_FOUND,
                {"detail": {"status": "agent_not_found", "message": "Agent not found"}},
            )
        if self.requires_auth and query.get("conversation_signature") not in self._tokens:
            return self._refuse(
                connection,
                HTTPStatus.FORBIDDEN,
                {"detail": {"status": "invalid_signature", "message": "Authentication required"}},
            )
        self._tokens.discard(query.get("conversation_signature", ""))  # a signature opens one conversation
        return None

    def _sign(self, connection: ServerConnection, request: Request, query: dict[str, str]) -> Response:
        if request.headers.get("xi-api-key") != self.api_key:
            return self._refuse(
                connection,
                HTTPStatus.UNAUTHORIZED,
                {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}},
            )
        if query.get("agent_id") != self.agent_id:
            return self._refuse(
                connection,
                HTTPStatus.NOT_FOUND,
                {"detail": {"status": "agent_not_found", "message": "Agent not found"}},
            )
        self.signed.append(query)
        token = secrets.token_urlsafe(12)
        self._tokens.add(token)
        ws = self.url.replace("http://", "ws://", 1)
        signed = f"{ws}/v1/convai/conversation?" + urlencode(
            {"agent_id": self.agent_id, "conversation_signature": token}
        )
        return _json(connection, HTTPStatus.OK, {"signed_url": signed})

    def _refuse(self, connection: ServerConnection, status: HTTPStatus, body: dict[str, Any]) -> Response:
        self.refused.append(int(status))
        return _json(connection, status, body)

    # --- one conversation ---------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        conversation = _Conversation(self, ws)
        try:
            await conversation.run()
        except ConnectionClosed:
            pass
        finally:
            await conversation.stop()
            self.closed.set()


class _Conversation:
    def __init__(self, server: LocalConvai, ws: ServerConnection) -> None:
        self.server = server
        self.ws = ws
        self.lock = asyncio.Lock()
        self.turn_ids = itertools.count(1)
        self.turn: _Turn | None = None
        """The agent's latest response."""
        self.user_turn: int | None = None
        self.tool_results: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.in_speech = False
        self.voiced_ms = 0
        self.silent_ms = 0
        self.outstanding: dict[int, float] = {}
        """Pings not answered yet: event id → when sent."""
        self.tasks: set[asyncio.Task[None]] = set()

    async def send(self, kind: str, **data: Any) -> None:
        async with self.lock:
            await self.ws.send(json.dumps({"type": kind, **data}))

    async def fail(self, code: int, error_type: str, message: str) -> None:
        """The documented way out: an ``error`` message, then a close with its code."""
        await self.send("error", error_event={"code": code, "message": message, "error_type": error_type})
        await self.ws.close(code, message)

    def spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        late = [i for i, sent in self.outstanding.items() if time.monotonic() - sent > 1.0]
        if late:
            self.server.problems.append(f"pings never answered: {late}")

    async def run(self) -> None:
        first = json.loads(await self.ws.recv())
        if first.get("type") != "conversation_initiation_client_data":
            self.server.problems.append(
                f"first message was {first.get('type') or 'audio'}, not the initiation"
            )
            await self.fail(1008, "invalid_message", "Expected conversation_initiation_client_data")
            return
        self.server.initiations.append(first)
        override = first.get("conversation_config_override") or {}
        refused = next((f for f in _leaves(override) if f not in self.server.allowed_overrides), None)
        if refused is not None:
            name = refused.rsplit(".", 1)[-1]
            await self.fail(1008, "override_error", f"Override for field '{name}' is not allowed by config.")
            return
        variables = first.get("dynamic_variables") or {}
        if not isinstance(variables, dict) or not all(
            isinstance(v, str | int | float | bool) for v in variables.values()
        ):
            await self.fail(1008, "value_error", "dynamic_variables values are strings, numbers or booleans")
            return
        await self.send(
            "conversation_initiation_metadata",
            conversation_initiation_metadata_event={
                "conversation_id": f"conv_{next(self.server._ids):04d}",
                "agent_output_audio_format": self.server.output_format,
                "user_input_audio_format": self.server.input_format,
            },
        )
        await self.ping()
        if self.server.ping_every_s:
            self.spawn(self.keep_pinging(self.server.ping_every_s))
        agent = override.get("agent") or {}
        greeting = agent.get("first_message", self.server.first_message)
        if greeting:
            self.start_turn(next(self.turn_ids), greeting, None)
        async for raw in self.ws:
            message = json.loads(raw)
            if "user_audio_chunk" in message:
                await self.audio(message["user_audio_chunk"])
                continue
            self.server.received.append(message)
            await self.on_message(message)

    # --- pings --------------------------------------------------------------------------------------

    async def ping(self) -> None:
        event_id = 1000 + len(self.server.pings)
        self.server.pings.append(event_id)
        self.outstanding[event_id] = time.monotonic()
        await self.send("ping", ping_event={"event_id": event_id, "ping_ms": 20})

    async def keep_pinging(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await self.ping()

    # --- client messages ----------------------------------------------------------------------------

    async def on_message(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "pong":
            event_id = message.get("event_id")
            if event_id not in self.outstanding:
                self.server.problems.append(f"pong for a ping never sent: {event_id!r}")
            else:
                del self.outstanding[event_id]
                self.server.pongs.append(event_id)
        elif kind == "client_tool_result":
            call_id = message.get("tool_call_id")
            if not isinstance(message.get("result"), str) or not isinstance(message.get("is_error"), bool):
                self.server.problems.append(
                    f"client_tool_result needs result (string) and is_error: {message}"
                )
            future = self.tool_results.pop(str(call_id), None)
            if future is None:
                self.server.problems.append(f"client_tool_result for an unknown call {call_id!r}")
            elif not future.done():
                future.set_result(message)
        elif kind == "contextual_update":
            if not isinstance(message.get("text"), str) or not message["text"]:
                self.server.problems.append("contextual_update without text")
            else:
                self.server.transcript.append(("context", message["text"]))
        elif kind == "user_message":
            text = str(message.get("text") or "")
            await self.interrupt()
            event_id = next(self.turn_ids)
            self.server.transcript.append(("user", text))
            self.start_turn(event_id, *self.answer(text))
        elif kind == "user_activity":
            pass
        else:
            self.server.problems.append(f"unknown client message {kind!r}")

    async def audio(self, data: str) -> None:
        raw = base64.b64decode(data)
        rate = FORMATS[self.server.input_format]
        if self.server.input_format.startswith("ulaw"):
            pcm = ulaw_decode(raw)
        else:
            if len(raw) % 2:
                self.server.problems.append("a PCM16 chunk with an odd number of bytes")
                return
            pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
        frame = rate // 50
        self.server.audio_ms += len(pcm) * 1000 / rate
        for offset in range(0, len(pcm) - frame + 1, frame):
            piece = pcm[offset : offset + frame].astype(np.float64) / 32768.0
            level = 20 * np.log10(np.sqrt(np.mean(piece**2)) + 1e-12)
            if level > VOICED_DBFS:
                self.voiced_ms += 20
                self.silent_ms = 0
                if not self.in_speech and self.voiced_ms >= SPEECH_START_MS:
                    await self.speech_started()
            else:
                self.voiced_ms = 0
                self.silent_ms += 20
                if self.in_speech and self.silent_ms >= self.server.silence_ms:
                    await self.speech_stopped()

    async def speech_started(self) -> None:
        self.in_speech = True
        await self.interrupt()
        self.user_turn = next(self.turn_ids)
        upcoming = self.server.transcripts[0] if self.server.transcripts else ""
        await self.send(
            "tentative_user_transcript",
            tentative_user_transcription_event={
                "user_transcript": upcoming.split(" ")[0],
                "event_id": self.user_turn,
            },
        )

    async def speech_stopped(self) -> None:
        self.in_speech = False
        event_id = self.user_turn if self.user_turn is not None else next(self.turn_ids)
        self.user_turn = None
        text = self.server.transcripts.pop(0) if self.server.transcripts else ""
        await self.send(
            "user_transcript", user_transcription_event={"user_transcript": text, "event_id": event_id}
        )
        if text and self.server.fail_on and self.server.fail_on in text:  # aside: reading goes on
            self.spawn(self.fail(1002, "llm_error", "The language model failed to respond"))
        elif text:
            self.server.transcript.append(("user", text))
            self.start_turn(event_id, *self.answer(text))

    async def interrupt(self) -> None:
        """The caller spoke (or typed) over the agent: its response stops where the caller stopped hearing."""
        turn = self.turn
        if turn is None or not turn.speaking():
            return
        turn.interrupted = True
        if turn.task is not None and turn.task is not asyncio.current_task():
            turn.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await turn.task
        heard = turn.heard()
        await self.send("interruption", interruption_event={"event_id": turn.event_id})
        await self.send(
            "agent_response_correction",
            agent_response_correction_event={
                "original_agent_response": turn.text,
                "corrected_agent_response": heard,
                "event_id": turn.event_id,
            },
        )
        for index in range(len(self.server.transcript) - 1, -1, -1):
            if self.server.transcript[index][0] == "agent":
                self.server.transcript[index] = ("agent", heard)
                break

    # --- the agent's side ---------------------------------------------------------------------------

    def answer(self, text: str) -> tuple[str, Rule | None]:
        marker = "word for word, and nothing else:"
        if marker in text:
            return text.split(marker, 1)[1].strip(), None
        for rule in self.server.rules:
            if rule.pattern.lower() in text.lower():
                return rule.reply, rule if rule.tool else None
        return self.server.default_reply, None

    def start_turn(self, event_id: int, text: str, rule: Rule | None) -> None:
        turn = _Turn(event_id)
        self.turn = turn
        turn.task = self.spawn(self.respond(turn, text, rule))

    async def respond(self, turn: _Turn, text: str, rule: Rule | None) -> None:
        """One agent turn. The text is whole when its first audio goes out (``agent_response`` is "sent
        with the first audio chunk"), so a tool call the model made after it goes out then, while the
        audio of the words before it still streams."""
        call: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        if rule is not None and rule.tool is not None:
            if text:
                started = asyncio.Event()
                speaking = self.spawn(self.speak(turn, text, started))
                await started.wait()
                call = await self.request_tool(turn, rule)
                await speaking
            else:
                call = await self.request_tool(turn, rule)
        elif text:
            await self.speak(turn, text)
        if rule is not None and call is not None:
            output = await self.tool_output(*call)
            await self.speak(turn, rule.after_tool.replace("{output}", output))
        if self.server.send_complete:
            await self.send("agent_response_complete")

    async def request_tool(self, turn: _Turn, rule: Rule) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        assert rule.tool is not None
        call_id = f"toolu_{next(self.server._ids):04d}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.tool_results[call_id] = future
        await self.send(
            "client_tool_call",
            client_tool_call={
                "tool_name": rule.tool,
                "tool_call_id": call_id,
                "parameters": rule.arguments,
                "event_id": turn.event_id,
            },
        )
        return call_id, future

    async def tool_output(self, call_id: str, future: asyncio.Future[dict[str, Any]]) -> str:
        try:
            async with asyncio.timeout(5.0):
                result = await future
        except TimeoutError:
            self.server.problems.append(f"no client_tool_result for {call_id}")
            return "nothing"
        self.server.transcript.append(("tool", str(result.get("result"))))
        return str(result.get("result"))

    async def speak(self, turn: _Turn, text: str, started: asyncio.Event | None = None) -> None:
        turn.text = f"{turn.text} {text}".strip()
        self.server.transcript.append(("agent", text))
        await self.send(
            "agent_response", agent_response_event={"agent_response": text, "event_id": turn.event_id}
        )
        rate = FORMATS[self.server.output_format]
        chunk = rate * self.server.chunk_ms // 1000
        for index, word in enumerate(text.split()):
            turn.word_starts.append((turn.audio_s, word))
            delta = word if index == 0 else " " + word
            audio = _tone(rate, self.server.ms_per_word, index)
            spans = _spread(delta, len(audio) * 1000 / rate)
            for offset in range(0, len(audio), chunk):
                piece = audio[offset : offset + chunk]
                start_ms, end_ms = offset * 1000 / rate, (offset + len(piece)) * 1000 / rate
                event: dict[str, Any] = {"audio_base_64": self.encode(piece), "event_id": turn.event_id}
                if self.server.alignment:
                    chars = [(c, s, d) for c, s, d in spans if start_ms <= s < end_ms]
                    event["alignment"] = {
                        "chars": [c for c, _, _ in chars],
                        "char_start_times_ms": [round(s - start_ms) for _, s, _ in chars],
                        "char_durations_ms": [round(d) for _, _, d in chars],
                    }
                if turn.first_audio_at is None:
                    turn.first_audio_at = time.monotonic()
                turn.audio_s += len(piece) / rate
                await self.send("audio", audio_event=event)
                if started is not None:
                    started.set()
                await asyncio.sleep(len(piece) / rate / self.server.speed)

    def encode(self, pcm: np.ndarray) -> str:
        data = (
            ulaw_encode(pcm) if self.server.output_format.startswith("ulaw") else pcm.astype("<i2").tobytes()
        )
        return base64.b64encode(data).decode("ascii")


def _leaves(override: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted names of the fields an override sets (``agent.prompt.prompt`` …)."""
    names: list[str] = []
    for key, value in override.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            names.extend(_leaves(value, name + "."))
        else:
            names.append(name)
    return names


def _spread(text: str, duration_ms: float) -> list[tuple[str, float, float]]:
    """Each character of ``text`` with its start and duration, spread evenly over the audio."""
    step = duration_ms / max(1, len(text))
    return [(c, i * step, step) for i, c in enumerate(text)]


def _tone(rate: int, ms: int, index: int) -> np.ndarray:
    t = np.arange(rate * ms // 1000) / rate
    tone = 0.2 * np.sin(2 * np.pi * (200 + 20 * (index % 5)) * t)
    fade = min(len(tone) // 4, rate // 200)
    if fade:
        ramp = np.linspace(0.0, 1.0, fade)
        tone[:fade] *= ramp
        tone[-fade:] *= ramp[::-1]
    return (tone * 32767).astype(np.int16)


def _json(connection: ServerConnection, status: HTTPStatus, body: dict[str, Any]) -> Response:
    response = connection.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response
