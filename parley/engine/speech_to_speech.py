"""A live conversation on a speech-to-speech engine: the same surface, timeline and audio path as
``Session``, with one remote model (``parley.providers.s2s``) hearing and speaking instead of the pipeline.

The provider decides turns (its voice activity, its transcription, its answer); this session does what
only the call's own side can: it paces the provider's audio out through the transport's ``AudioOutput``
(so it is recorded, supervised and flushed like the pipeline's), knows what was really heard, and on a
barge-in clears the output and tells the provider where the listener stopped hearing (OpenAI's
``conversation.item.truncate``), so its memory of the call holds only what was heard. It runs the agent's
Parley tools for the provider's function calls, and puts every step on the timeline with the pipeline's
event types, so persistence, costs, the monitor and recordings work unchanged.

The session holds the control flow (turns, barge-in, tools, the provider's events); its parts live apart:
``s2s_reply`` (a reply's audio items and what of them was heard), ``s2s_playout`` (pacing the audio out),
``s2s_history`` (the history in the order heard) and ``s2s_inbound`` (the caller's audio to the provider).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import structlog

from parley.audio.frame import PCM16, AudioFrame
from parley.engine.agent import AgentConfig
from parley.engine.context import ConversationContext
from parley.engine.conversation import Answering
from parley.engine.events import Event, EventType, TimelineSink, now
from parley.engine.keypad import KeypadEntry, check_digit
from parley.engine.options import EngineStack, SessionOptions
from parley.engine.s2s_history import S2SHistory
from parley.engine.s2s_inbound import InboundAudio
from parley.engine.s2s_playout import S2SPlayout
from parley.engine.s2s_reply import S2SReply
from parley.engine.state import TURN_TRANSITIONS, InvalidTransition, SessionState, TurnState
from parley.engine.tools import ToolRegistry, ToolScope
from parley.engine.transport import AudioOutput, ConfirmsPlayout
from parley.engine.variables import render_agent
from parley.providers.errors import ProviderCallError
from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec
from parley.providers.s2s.base import (
    AgentAudio,
    AgentTranscript,
    EngineError,
    Interrupted,
    ResponseDone,
    S2SConnection,
    S2SEvent,
    S2SSetup,
    S2SUsage,
    SpeechStarted,
    SpeechStopped,
    SpeechToSpeechEngine,
    ToolCallRequest,
    UserTranscript,
)

log = structlog.get_logger("parley.engine.speech_to_speech")

__all__ = ["NotInPipeline", "SpeechToSpeechSession"]


def _language(agent: AgentConfig) -> str | None:
    """The call's language when the agent fixes one (``auto``: the provider hears which)."""
    code = getattr(agent, "language", None)
    return code if isinstance(code, str) and code != "auto" else None


def _approx_tokens(text: str) -> int:
    """The provider keeps its own context: ours only mirrors it (history, notes), so a rough count does."""
    return max(1, len(text) // 4)


class SpeechToSpeechSession:
    """``Session``'s surface (see ``parley.engine.conversation.ConversationEngine``) over a remote
    speech-to-speech engine. Built by ``open_session`` when the agent's ``mode`` is
    ``speech_to_speech``."""

    def __init__(
        self,
        agent: AgentConfig,
        stack: EngineStack,
        output: AudioOutput,
        timeline: TimelineSink,
        tools: ToolRegistry | None = None,
        options: SessionOptions | None = None,
        session_id: str | None = None,
    ) -> None:
        if stack.s2s is None:
            raise ValueError("a speech-to-speech session needs a stack with an s2s engine")
        self.id = session_id or uuid.uuid4().hex[:12]
        self.stack = stack
        self.engine: SpeechToSpeechEngine = stack.s2s
        self.output = output
        self.timeline = timeline
        self.options = options or SessionOptions()
        self.tools = tools or ToolRegistry()
        self.agent = agent = render_agent(agent, self.options.variables)
        self.context = ConversationContext(
            agent.system_prompt,
            agent.knowledge,
            agent.context_token_budget,
            _approx_tokens,
            grounded=agent.grounded,
        )
        self._history = S2SHistory(self.context)
        self._inbound: asyncio.Queue[AudioFrame | None] = asyncio.Queue(self.options.inbound_max_frames)
        self._caller_audio = InboundAudio(self.engine.input_rate)
        settings = self.options.reply
        self._playout = S2SPlayout(
            output,
            source_rate=self.engine.output_rate,
            frame_ms=settings.frame_ms,
            lead_s=settings.lead_s,
            underrun_tolerance_s=settings.underrun_tolerance_s,
            current=lambda: self._reply,
            started=self._on_audio_started,
            done=lambda reply: self._finish(reply, reason="completed"),
            emit=self._emit,
        )
        self._outbox: asyncio.Queue[tuple[str, Callable[[S2SConnection], Awaitable[None]]]] = asyncio.Queue()
        self._player: asyncio.Task[None] | None = None
        self._conn: S2SConnection | None = None
        self._turn = TurnState.IDLE
        self._reply: S2SReply | None = None
        """The response the caller hears (or is about to)."""
        self._dropped: dict[str, str] = {}
        """Responses cancelled here (to their reply id): whatever of them still arrives is not played."""
        self._in_speech = False
        self._speech_end: float | None = None
        """When the caller last stopped speaking (or typed): the next reply's voice-to-voice origin."""
        self._next_end_after: str | None = None
        self._end_reason: str | None = None
        self._dropped_frames = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tool_tasks: set[asyncio.Task[None]] = set()
        self._keypad = KeypadEntry(lambda entry: self._user_message(entry, "dtmf"), self._spawn)
        self._handed_over_to: str | None = None

    # --- the transport's side -----------------------------------------------------------------------

    @property
    def state(self) -> SessionState:
        return self._turn.public

    @property
    def turn(self) -> TurnState:
        return self._turn

    @property
    def idle(self) -> bool:
        return self._turn in (TurnState.LISTENING, TurnState.ENDED) and not self._busy_tools()

    @property
    def handed_over(self) -> bool:
        return self._handed_over_to is not None

    @property
    def answering(self) -> Answering | None:
        """The reply under way; the caller's words it answers when they are not in the history yet (the
        provider's transcript of a turn may come after its answer started)."""
        reply = self._reply
        if reply is None:
            return None
        return Answering(reply.id, self._history.latest_held)

    def feed_audio(self, frame: AudioFrame) -> None:
        """Queue inbound audio without blocking; on overflow the oldest frame is dropped and reported."""
        if self._end_reason is not None:
            return
        if self._inbound.full():
            self._inbound.get_nowait()
            self._dropped_frames += 1
            if self._dropped_frames in (1, 10) or self._dropped_frames % 100 == 0:
                self._emit(EventType.INPUT_OVERFLOW, dropped_frames=self._dropped_frames)
        self._inbound.put_nowait(frame)

    def send_text(self, text: str) -> None:
        """A typed user message: it interrupts whatever the agent is saying and is answered."""
        self._user_message(text, "text")

    def press_key(self, digit: str) -> None:
        """A keypad digit; an entry (digits a short pause apart, or up to ``#``) reaches the model as one
        user message, as in the pipeline."""
        check_digit(digit)
        if self._end_reason is not None:
            return
        self._emit(EventType.DTMF, digit=digit)
        self._keypad.press(digit)

    def say(self, text: str, *, end_after: str | None = None) -> None:
        """Have the agent say ``text`` now, over whatever it was saying; with ``end_after``, end the
        session with that reason once it was heard."""
        text = text.strip()
        if not text or self._end_reason is not None:
            return
        self._stop_reply("say")
        self._next_end_after = end_after
        self._speech_end = now()
        self._turn_to(TurnState.THINKING)
        self._call_provider("say", lambda conn: conn.say(text))

    def interrupt(self) -> None:
        """An explicit interrupt (a button): the agent stops, keeps only what was heard, and listens."""
        if self._reply is None:
            return
        self._stop_reply("interrupt")
        self._turn_to(self._floor())

    def hand_over(self, to: str) -> None:
        """A person takes the call: the agent stops, then hears and remembers but answers nobody."""
        if self._end_reason is not None or self._handed_over_to is not None:
            return
        self._handed_over_to = to
        self._emit(EventType.HANDOVER_STARTED, to=to)
        if self._reply is not None:
            self._stop_reply("handed_over")
            self._turn_to(self._floor())
        self._call_provider("hold", lambda conn: conn.hold(True))

    def take_back(self) -> None:
        if self._handed_over_to is None:
            return
        self._emit(EventType.HANDOVER_ENDED, by=self._handed_over_to)
        self._handed_over_to = None
        self._call_provider("hold", lambda conn: conn.hold(False))

    def add_note(self, text: str, *, kind: str, by: str = "supervisor") -> None:
        """A supervisor's words for the agent, as in ``Session.add_note``; sent to the provider as
        context (a system item), answered by nobody."""
        text = " ".join(text.split())
        if not text or self._end_reason is not None:
            return
        if kind == "whisper":
            note = f"Your supervisor tells you privately (the caller cannot hear this): {text}"
        elif kind == "said":
            note = f'Your supervisor joined the call and said to the caller: "{text}"'
        else:
            raise ValueError(f"a supervisor note is 'whisper' or 'said', not {kind!r}")
        self.context.add_note(note)
        self._emit(EventType.SUPERVISOR_NOTE, kind=kind, by=by, text=text)
        self._call_provider("note", lambda conn: conn.add_note(note))

    def end(self, reason: str = "hangup") -> None:
        if self._end_reason is None:
            self._end_reason = reason
            if self._inbound.full():
                self._inbound.get_nowait()
            self._inbound.put_nowait(None)

    # --- main loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, stream audio both ways until ``end()``; every task is finished before this returns."""
        self._emit(EventType.SESSION_STARTED, agent=self.agent.name, engine=self.engine.name)
        if self._turn is TurnState.IDLE:
            self._turn_to(TurnState.LISTENING)
        try:
            if await self._connect():
                await self._stream()
        finally:
            await self._shutdown()

    async def _connect(self) -> bool:
        setup = S2SSetup(
            instructions=self.context.system_message().content,
            tools=tuple(self.tools.specs()),
            first_message=self.agent.first_message,
            language=_language(self.agent),
            interruptible=self.agent.interruption.enabled,
            session_id=self.id,
        )
        try:
            self._conn = await self.engine.connect(setup)
        except (ProviderCallError, OSError, TimeoutError) as exc:
            log.warning("speech-to-speech engine unavailable", session_id=self.id, error=repr(exc))
            self._emit(EventType.ERROR, where="s2s.connect", stage="s2s", error=repr(exc))
            self.end("provider_unavailable")
            return False
        self._player = self._spawn(self._playout.play())
        self._spawn(self._receive(self._conn))
        self._spawn(self._send_controls(self._conn))
        first = self.agent.first_message
        if first:
            self._speech_end = now()  # the greeting's latency runs from the call's start
            if self._turn is TurnState.LISTENING:
                self._turn_to(TurnState.THINKING)
            if not self._conn.speaks_first_message:
                self._call_provider("say", lambda conn: conn.say(first))
        return True

    async def _stream(self) -> None:
        conn = self._conn
        assert conn is not None
        while (frame := await self._inbound.get()) is not None:
            pcm = self._caller_audio.convert(frame)
            if len(pcm):
                try:
                    await conn.send_audio(pcm)
                except (ProviderCallError, OSError) as exc:
                    self._lost(exc, "s2s.send_audio")
                    return

    async def _shutdown(self) -> None:
        if self._reply is not None:
            self._stop_reply("session_ended")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._conn is not None:
            try:
                await self._conn.aclose()
            except Exception as exc:  # the session ends all the same; a connection that cannot close is news
                log.warning(
                    "closing the speech-to-speech connection failed", session_id=self.id, error=repr(exc)
                )
        self._turn_to(TurnState.ENDED)
        self._emit(EventType.SESSION_ENDED, reason=self._end_reason or "closed")

    def _lost(self, exc: BaseException, where: str) -> None:
        log.warning("speech-to-speech connection lost", session_id=self.id, where=where, error=repr(exc))
        self._emit(EventType.ERROR, where=where, stage="s2s", error=repr(exc))
        self.end("provider_error")

    # --- the provider's side ------------------------------------------------------------------------

    async def _receive(self, conn: S2SConnection) -> None:
        try:
            async for event in conn.events():
                await self._on_event(event)
        except (ProviderCallError, OSError) as exc:
            self._lost(exc, "s2s.events")
            return
        if self._end_reason is None:
            self._emit(EventType.ERROR, where="s2s.events", stage="s2s", error="the provider closed the call")
            self.end("provider_closed")

    async def _on_event(self, event: S2SEvent) -> None:
        if isinstance(event, AgentAudio):
            self._on_audio(event)
        elif isinstance(event, AgentTranscript):
            self._on_agent_words(event)
        elif isinstance(event, SpeechStarted):
            await self._on_speech_started(self._caller_audio.when(event.at_ms))
        elif isinstance(event, SpeechStopped):
            self._on_speech_stopped(self._caller_audio.when(event.at_ms))
        elif isinstance(event, UserTranscript):
            self._on_user_transcript(event.text)
        elif isinstance(event, ToolCallRequest):
            self._on_tool_call(event)
        elif isinstance(event, ResponseDone):
            self._on_response_done(event)
        elif isinstance(event, Interrupted):
            if self._reply is not None and (
                not event.response_id or event.response_id in self._reply.response_ids
            ):
                await self._barge_in(tell_provider=False)
        elif isinstance(event, EngineError):
            log.warning(
                "speech-to-speech engine error", session_id=self.id, code=event.code, error=event.message
            )
            self._emit(EventType.ERROR, where="s2s", stage="s2s", code=event.code, error=event.message)
            if event.fatal:
                self.end("provider_error")

    def _reply_for(self, response_id: str) -> S2SReply | None:
        """The reply a response's output belongs to; a new response becomes the current reply."""
        if response_id in self._dropped or self._end_reason is not None:
            return None
        reply = self._reply
        if reply is not None and response_id in reply.response_ids:
            return reply
        if reply is not None and reply.awaiting_tools:  # the answer with the tools' results
            reply.response_ids.append(response_id)
            reply.awaiting_tools = reply.done = False
            return reply
        if self._handed_over_to is not None:  # a person has the call: nothing the engine says is played
            self._dropped[response_id] = ""
            self._call_provider("interrupt", lambda conn: conn.interrupt(None, 0))
            return None
        speech_end = self._speech_end
        if reply is not None:  # the provider moved on (a response after tool results): the old one is over
            if speech_end is None and reply.first_audio_at is None:
                speech_end = reply.speech_end  # nothing was heard yet: the caller still waits since then
            self._finish(reply, reason="superseded")
        reply = S2SReply([response_id], speech_end=speech_end)
        reply.end_after, self._next_end_after = self._next_end_after, None
        self._reply = reply
        if self._turn in (TurnState.USER_PAUSED, TurnState.LISTENING, TurnState.INTERRUPTED):
            self._turn_to(TurnState.THINKING)
        return reply

    def _on_audio(self, event: AgentAudio) -> None:
        reply = self._reply_for(event.response_id)
        if reply is None or not len(event.pcm):
            return
        self._playout.push(reply, event.item_id, event.pcm)

    def _on_agent_words(self, event: AgentTranscript) -> None:
        reply = self._reply_for(event.response_id)
        if reply is None:
            return
        reply.item(event.item_id).transcript += event.text
        for piece in reply.chunker.push(event.text):
            self._agent_text(reply, piece)

    def _agent_text(self, reply: S2SReply, text: str) -> None:
        self._emit(EventType.AGENT_TEXT, reply_id=reply.id, segment=reply.segments, text=text, ready_at=now())
        reply.segments += 1

    async def _on_speech_started(self, onset: float) -> None:
        self._in_speech = True
        self._emit(EventType.SPEECH_STARTED, at=onset)
        if self._turn.agent_holds_floor:
            if self.agent.interruption.enabled:
                await self._barge_in(tell_provider=True, onset=onset)
            return  # interruptions off: the agent talks on; this speech is no turn
        if self._turn in (TurnState.LISTENING, TurnState.USER_PAUSED, TurnState.INTERRUPTED):
            self._turn_to(TurnState.USER_SPEAKING)

    def _on_speech_stopped(self, end: float) -> None:
        self._in_speech = False
        self._speech_end = end
        self._emit(EventType.SPEECH_STOPPED, at=self._speech_end)
        if self._turn is TurnState.USER_SPEAKING:
            self._turn_to(TurnState.USER_PAUSED)
        elif self._turn is TurnState.TALKED_OVER:
            self._turn_to(TurnState.LISTENING)

    def _on_user_transcript(self, text: str) -> None:
        text = text.strip()
        if not text:
            if self._turn is TurnState.USER_PAUSED and self._reply is None:
                self._turn_to(TurnState.LISTENING)
            return
        self._emit(EventType.TRANSCRIPT_FINAL, text=text, source="speech")
        if self._speech_end is not None and self._reply is None:
            self._emit(
                EventType.TURN_ENDED,
                speech_end=self._speech_end,
                waited_ms=round((now() - self._speech_end) * 1000, 1),
            )
        self._remember_user(text)
        if self._handed_over_to is not None and self._turn is TurnState.USER_PAUSED:
            self._turn_to(TurnState.LISTENING)

    def _remember_user(self, text: str) -> None:
        """A transcript arriving while a reply is prepared joins the history once that reply starts to be
        heard or is recorded (it was the turn the reply answers)."""
        if self._reply is not None and self._reply.first_audio_at is None:
            self._history.hold_user(text)
        else:
            self.context.add_user(text)

    def _user_message(self, text: str, source: str) -> None:
        text = text.strip()
        if not text or self._end_reason is not None:
            return
        self._emit(EventType.TRANSCRIPT_FINAL, text=text, source=source)
        if self._handed_over_to is not None:
            self.context.add_user(text)
            self._call_provider("note", lambda conn: conn.add_note(f"The caller said: {text}"))
            return
        self._stop_reply(f"{source}_input")
        self.context.add_user(text)
        self._speech_end = now()
        self._turn_to(TurnState.THINKING)
        self._call_provider("send_text", lambda conn: conn.send_text(text))

    # --- tools --------------------------------------------------------------------------------------

    def _on_tool_call(self, event: ToolCallRequest) -> None:
        reply = self._reply_for(event.response_id)
        if reply is None:
            return
        if self._turn in (TurnState.LISTENING, TurnState.USER_PAUSED):
            self._turn_to(TurnState.THINKING)
        reply.awaiting_tools = True
        task = self._spawn(self._run_tool(reply, event))
        reply.tools.add(task)
        self._tool_tasks.add(task)
        task.add_done_callback(reply.tools.discard)
        task.add_done_callback(self._tool_tasks.discard)

    async def _run_tool(self, reply: S2SReply, event: ToolCallRequest) -> None:
        try:
            arguments = json.loads(event.arguments or "{}")
        except json.JSONDecodeError:
            arguments = None
        call = ToolCall(
            event.call_id, event.name, arguments if isinstance(arguments, dict) else {}, event.arguments
        )
        tool = self.tools.get(event.name)
        if tool is not None and tool.side_effect:
            await self._playout.wait_played(reply)  # a side effect follows only words the caller heard
        self._emit(
            EventType.TOOL_CALL, reply_id=reply.id, tool=call.name, arguments=call.arguments, call_id=call.id
        )
        started = now()
        if not isinstance(arguments, dict):
            ok, content, end_call = False, f"error: the arguments of {call.name} are not a JSON object", False
        else:
            outcome = await self.tools.execute(call, ToolScope())
            ok, content, end_call = outcome.ok, outcome.content, outcome.end_call
        self._emit(
            EventType.TOOL_RESULT,
            reply_id=reply.id,
            tool=call.name,
            call_id=call.id,
            ok=ok,
            result=content,
            latency_ms=round((now() - started) * 1000, 1),
        )
        self._history.add_tool(call, content)
        if end_call:
            await self._playout.wait_played(self._reply or reply)
            self.end("agent_ended_call")
            return
        if self._end_reason is None and event.response_id not in self._dropped:
            conn = self._conn
            assert conn is not None
            await conn.tool_result(call.id, content, is_error=not ok)

    def _busy_tools(self) -> bool:
        return bool(self._tool_tasks)

    # --- the end of a response ----------------------------------------------------------------------

    def _on_response_done(self, event: ResponseDone) -> None:
        usage = event.usage or S2SUsage()
        current = self._reply
        reply = current if current is not None and event.response_id in current.response_ids else None
        if reply is not None:
            usage = reply.add_usage(usage)
        reply_id = (
            reply.id if reply is not None else self._dropped.get(event.response_id) or event.response_id
        )
        self._emit(
            EventType.LLM_COMPLETED,
            reply_id=reply_id,
            round=0,
            status=event.status,
            text=reply.full_text() if reply is not None else "",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            input_audio_tokens=usage.input_audio_tokens,
            output_audio_tokens=usage.output_audio_tokens,
            cached_tokens=usage.cached_tokens,
        )
        if reply is None:
            return
        reply.done = True
        for piece in reply.chunker.flush():
            self._agent_text(reply, piece)
        self._playout.flush(reply)
        if reply.awaiting_tools and event.status == "completed":
            return  # the tools' results start the response that carries this reply on
        if reply.first_audio_at is None and not reply.queued:
            self._finish(reply, reason="completed")
            return
        self._playout.end(reply)

    def _finish(self, reply: S2SReply, reason: str) -> None:
        """The reply was played to the end: record it, as the pipeline records a completed reply."""
        if self._reply is reply:
            self._reply = None
        self._history.add_reply(reply.full_text())
        if reply.first_audio_at is not None:
            self._emit(
                EventType.AGENT_AUDIO_STOPPED, reply_id=reply.id, at=reply.audio_done_at, reason="completed"
            )
        usage = reply.usage
        self._emit(
            EventType.AGENT_REPLY_DONE,
            reply_id=reply.id,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
        )
        if self._reply is None and reason == "completed":
            self._turn_to(self._floor())
        if reply.end_after is not None:
            self.end(reply.end_after)

    # --- barge-in -----------------------------------------------------------------------------------

    async def _barge_in(self, *, tell_provider: bool, onset: float | None = None) -> None:
        """The caller talks over the agent: it stops at once (no backchannel check: the provider's
        voice activity decided, and its response is already being cancelled)."""
        reply = self._reply
        onset = onset if onset is not None else now()
        if reply is not None:
            latency = round((now() - onset) * 1000, 1)
            self._emit(EventType.BARGE_IN, at=onset, reply_id=reply.id, latency_ms=latency)
            self._stop_reply("barge_in", tell_provider=tell_provider)
        elif tell_provider:  # asked for, not begun: the response is called off before it speaks
            self._call_provider("interrupt", lambda conn: conn.interrupt(None, 0))
        if self._turn.agent_holds_floor:
            self._turn_to(TurnState.INTERRUPTED)
        self._turn_to(self._floor())

    def _stop_reply(self, reason: str, *, tell_provider: bool = True) -> None:
        """Stop the current reply in one move: the output is flushed, the provider stops the response
        and forgets what was not heard, and the history keeps only what was."""
        reply, self._reply = self._reply, None
        if reply is None:
            return
        self._dropped.update(dict.fromkeys(reply.response_ids, reply.id))
        reply.drained.set()
        cut = now()
        if isinstance(self.output, ConfirmsPlayout):
            cut = self.output.heard_until(cut)
        self._restart_player()
        for task in list(reply.tools):
            task.cancel()
        heard, item, heard_ms = reply.heard(cut, self.output.sample_rate)
        complete = reply.done and reply.audio_done_at is not None
        if tell_provider:
            item_id = item.id if item is not None else None
            self._call_provider("interrupt", lambda conn: conn.interrupt(item_id, heard_ms))
        self._history.add_reply(heard)
        self._emit(
            EventType.REPLY_CANCELLED,
            reply_id=reply.id,
            reason=reason,
            heard_text=heard,
            interrupted=not complete,
            heard_ms=heard_ms,
        )
        if reply.first_audio_at is not None:
            self._emit(EventType.AGENT_AUDIO_STOPPED, reply_id=reply.id, at=cut, reason=reason)

    # --- playout ------------------------------------------------------------------------------------

    def _restart_player(self) -> None:
        """Drop every queued frame and flush the output; the play loop starts afresh."""
        if self._player is not None:
            self._player.cancel()
        self._playout.drop_queued()
        self._spawn(self.output.clear())
        if self._conn is not None and self._end_reason is None:
            self._player = self._spawn(self._playout.play())

    def _on_audio_started(self, reply: S2SReply) -> None:
        assert reply.first_audio_at is not None
        speech_end = reply.speech_end if reply.speech_end is not None else reply.first_audio_at
        self._emit(
            EventType.AGENT_AUDIO_STARTED,
            reply_id=reply.id,
            at=reply.first_audio_at,
            v2v_ms=round((reply.first_audio_at - speech_end) * 1000, 1),
        )
        self._speech_end = None
        self._history.flush()
        if self._turn in (TurnState.THINKING, TurnState.USER_PAUSED, TurnState.LISTENING):
            if self._turn is not TurnState.THINKING:
                self._turn_to(TurnState.THINKING)
            self._turn_to(TurnState.SPEAKING)

    # --- plumbing -----------------------------------------------------------------------------------

    def _call_provider(self, what: str, call: Callable[[S2SConnection], Awaitable[None]]) -> None:
        """Tell the provider something without waiting (the caller is sync). Sent one at a time, in
        order, from the moment the connection is up; a failure ends the call."""
        if self._end_reason is None:
            self._outbox.put_nowait((what, call))

    async def _send_controls(self, conn: S2SConnection) -> None:
        while True:
            what, call = await self._outbox.get()
            try:
                await call(conn)
            except (ProviderCallError, OSError) as exc:
                self._lost(exc, f"s2s.{what}")
                return

    def _floor(self) -> TurnState:
        if self._turn is TurnState.ENDED:
            return TurnState.ENDED
        if self._reply is not None:
            return TurnState.SPEAKING if self._reply.first_audio_at is not None else TurnState.THINKING
        if self._in_speech:
            talked_over = self._turn.agent_holds_floor or self._turn is TurnState.TALKED_OVER
            return TurnState.TALKED_OVER if talked_over else TurnState.USER_SPEAKING
        return TurnState.LISTENING

    def _turn_to(self, new: TurnState) -> None:
        old = self._turn
        if new is old:
            return
        if new not in TURN_TRANSITIONS[old]:
            raise InvalidTransition(f"{old} -> {new}")
        self._turn = new
        if new.public is not old.public:
            self._emit(EventType.STATE_CHANGED, old=str(old.public), new=str(new.public), turn=str(new))

    def _emit(self, type_: EventType, **data: Any) -> None:
        self.timeline.emit(Event(type_, self.id, now(), data))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            log.warning("a speech-to-speech session task failed", session_id=self.id, error=repr(error))
            self._emit(EventType.ERROR, where="session", error=repr(error))


class NotInPipeline:
    """The stack's ``llm`` and ``tts`` in speech-to-speech mode: the remote engine thinks and speaks, so
    these are never asked (the few places that look at a stack's LLM or voice get a clear answer)."""

    name = "s2s"
    sample_rate = 24000

    def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        tool_choice: str | None = None,
        strict: bool = False,
    ) -> AsyncIterator[LLMChunk]:
        raise RuntimeError("a speech-to-speech agent has no pipeline language model")

    def synthesize(self, text: str) -> AsyncIterator[PCM16]:
        raise RuntimeError("a speech-to-speech agent has no pipeline voice")

    def count_tokens(self, text: str) -> int:
        return _approx_tokens(text)

    async def warm_up(self, *_: Any, **__: Any) -> None:
        return None
