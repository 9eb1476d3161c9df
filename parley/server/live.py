"""A live session on this node: the engine session plus what outlives any one connection to it.

The conversation (engine ``Session``), its timeline, the numbered outbound audio and message streams,
and the watchdog (idle timeout, maximum duration, reconnect grace) belong here; a connection only
attaches to it. When a socket drops, the session waits ``reconnect_grace_s`` for the client to come back
with its token; the agent's playout holds meanwhile (no underrun: the listener was away, not starved),
and the client gets exactly what it missed, and is told which reply is still to come.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from parley.audio.frame import PCM16, AudioFrame
from parley.engine.agent import AgentConfig
from parley.engine.conversation import open_session
from parley.engine.event_payloads import AudioUnderrun, SessionEnded, SessionResumed
from parley.engine.events import Event, EventType, Timeline, TimelineSink, now
from parley.engine.session import EngineStack, SessionOptions
from parley.engine.tools import ToolRegistry
from parley.engine.transport import CallControls
from parley.rooms.tap import SupervisionTap
from parley.transports.downlink import Downlink, Peer
from parley.transports.uplink import InboundClock
from parley.transports.ws_protocol import messages_for, server_message

if TYPE_CHECKING:
    from parley.platform.live import LiveCall

log = structlog.get_logger("parley.server.live")

# Events that are not a sign of life from the conversation (the engine reports them on its own).
_NOT_ACTIVITY = frozenset({EventType.AUDIO_UNDERRUN, EventType.INPUT_OVERFLOW, EventType.METRICS})


class Connection(Peer, Protocol):
    """A client connection as the live session sees it; ``send_message`` and ``close`` never wait."""

    def send_message(self, message: dict[str, Any]) -> None: ...

    def close(self, code: int, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class LiveLimits:
    idle_timeout_s: float
    max_duration_s: float
    reconnect_grace_s: float
    start_timeout_s: float = 5.0
    """A session that got no audio or text this long after it opened never got going: its slot is freed."""


class BoundedTimeline(Timeline):
    """A timeline that keeps only recent events in memory; subscribers still see every one.

    Hundreds of sessions each holding their whole history would also make every full garbage
    collection (which stops the event loop) slower; persistence is a subscriber's job.
    """

    def __init__(self, keep: int = 200) -> None:
        super().__init__()
        self.keep = keep

    def emit(self, event: Event) -> None:
        super().emit(event)
        if len(self.events) > self.keep:
            del self.events[: len(self.events) - self.keep // 2]


class _EngineEvents:
    """Where the engine's events enter the session's timeline. A gap the engine's playout clock measured
    across a hold (the downlink's write waited for a client that had dropped) is the listener's absence,
    not a starved playout: it is no ``audio.underrun``, and only what the hold does not explain, if more
    than the engine's tolerance, is reported. Every consumer (the call's record and counts, the client's
    ``metrics``, ``/metrics``) then sees the same."""

    def __init__(self, timeline: TimelineSink, downlink: Downlink, tolerance_s: float) -> None:
        self.timeline = timeline
        self.downlink = downlink
        self.tolerance_s = tolerance_s

    def emit(self, event: Event) -> None:
        if event.type is EventType.AUDIO_UNDERRUN:
            gap_ms = event.payload(AudioUnderrun).gap_ms
            if gap_ms is not None:
                gap_s = gap_ms / 1000
                starved_s = gap_s - self.downlink.held_during(event.t - gap_s, event.t)
                if starved_s <= self.tolerance_s:
                    return
                if starved_s < gap_s:
                    event = dataclasses.replace(
                        event, data={**event.data, "gap_ms": round(starved_s * 1000, 1)}
                    )
        self.timeline.emit(event)


class LiveSession:
    def __init__(
        self,
        agent: AgentConfig,
        stack: EngineStack,
        *,
        input_rate: int,
        output_rate: int,
        limits: LiveLimits,
        options: SessionOptions,
        tools: ToolRegistry | None = None,
        on_closed: Callable[[LiveSession], None] | None = None,
        replay_messages: int = 256,
        call: LiveCall | None = None,
        controls: CallControls | None = None,
    ) -> None:
        self.agent = agent
        self.controls = controls or CallControls()
        """What the line can do for tools (transfer); the transport fills it in when it attaches."""
        self.token = secrets.token_urlsafe(24)
        self.limits = limits
        self.input_rate = input_rate
        self.output_rate = output_rate
        self.timeline = BoundedTimeline()
        self.downlink = Downlink(output_rate, frame_ms=options.reply.frame_ms)
        self.call = call
        """The call on the books (store, timeline bus, recording) when the server runs with a platform."""
        output = call.output(self.downlink) if call is not None else self.downlink
        self.tap = SupervisionTap(output)
        """Where supervisors listen in (``platform/supervision.py``): a None check while nobody does."""
        session_id = call.session_id if call is not None else None
        events = _EngineEvents(self.timeline, self.downlink, options.reply.underrun_tolerance_s)
        self.engine = open_session(agent, stack, self.tap, events, tools, options, session_id)
        """The conversation: a pipeline ``Session``, or a ``SpeechToSpeechSession`` by the agent's mode."""
        self._held_end: Event | None = None
        if call is not None:
            self.timeline.subscribe(self._to_call)
        self.id = self.engine.id
        self.clock = InboundClock()
        self.started_at = now()
        self.last_activity = self.started_at
        self.detached_at: float | None = self.started_at
        self.end_reason: str | None = None
        self.got_going = False
        """Audio or text came in: the session is in use (until then, ``start_timeout_s`` applies)."""
        self.last_inbound_seq = 0
        """Highest numbered inbound frame heard; a reconnecting client's repeats are dropped."""
        self.connection: Connection | None = None
        self._on_closed = on_closed
        self._next_message_seq = 0
        self._sent: deque[dict[str, Any]] = deque(maxlen=replay_messages)
        self._changed = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.timeline.subscribe(self._on_event)

    def subscribe_metrics(self, observe: Callable[[Event], None]) -> None:
        """Feed a metrics consumer every event of the session (a reconnect's hold is no underrun in any
        of them: see ``_EngineEvents``)."""
        self.timeline.subscribe(observe)

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name=f"live-{self.id}")

    async def wait_closed(self) -> None:
        if self._runner is not None:
            await asyncio.shield(self._runner)

    @property
    def closed(self) -> bool:
        return self._runner is not None and self._runner.done()

    def notify_shutdown(self, grace_s: float) -> None:
        self.send(
            server_message(
                "server.shutdown",
                grace_s=grace_s,
                message=f"the server is restarting; this session ends within {grace_s:g} s",
            )
        )

    def end(self, reason: str) -> None:
        if self.end_reason is None:
            self.end_reason = reason
        self.engine.end(reason)

    async def _run(self) -> None:
        watchdog = asyncio.create_task(self._watch())
        try:
            async with self.call if self.call is not None else contextlib.nullcontext():
                try:
                    await self.engine.run()
                finally:
                    await self._end_supervision()
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog
            reason = self.end_reason or "ended"
            self.send(server_message("session.ended", session_id=self.id, reason=reason))
            if self.connection is not None:
                self.connection.close(1000, reason)
                self.detach(self.connection)
            if self._on_closed is not None:
                self._on_closed(self)

    def _to_call(self, event: Event) -> None:
        """The call's record. Its end waits while supervisors are in: they leave first, so their last
        events are numbered before it."""
        assert self.call is not None
        if event.type is EventType.SESSION_ENDED and self.tap.listener is not None:
            self._held_end = event
            return
        self.call.timeline.emit(event)

    async def _end_supervision(self) -> None:
        listener = self.tap.listener
        if listener is not None:
            try:
                await listener.close("call_ended")
            except Exception:  # the call's end must still reach its record
                log.exception("closing the supervision of a call failed", session_id=self.id)
        held, self._held_end = self._held_end, None
        if held is not None and self.call is not None:
            self.call.timeline.emit(held)

    async def _watch(self) -> None:
        """End the session when it idles, runs too long, or its client does not come back in time."""
        limits = self.limits
        while True:
            busy = not self.engine.idle
            deadlines = {"max_duration": self.started_at + limits.max_duration_s}
            if not self.got_going:
                deadlines["no_input"] = self.started_at + limits.start_timeout_s
            if not busy:
                deadlines["idle_timeout"] = self.last_activity + limits.idle_timeout_s
            if self.detached_at is not None:
                deadlines["client_gone"] = self.detached_at + limits.reconnect_grace_s
            reason, deadline = min(deadlines.items(), key=lambda item: item[1])
            delay = deadline - now()
            if delay <= 0:
                self.end(reason)
                return
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
                # arrives as the event fires, and the session's shutdown would wait forever.
                async with asyncio.timeout(min(delay, 1.0) if busy else delay):
                    await self._changed.wait()

    # --- the connection's side ----------------------------------------------------------------------

    def attach(
        self, connection: Connection, last_audio_seq: int | None = None, last_message_seq: int | None = None
    ) -> int:
        """Make ``connection`` the one this session talks to; a previous one is told and closed.

        After a reconnect, messages after ``last_message_seq`` and audio after ``last_audio_seq`` are
        sent again (each once). Returns the number of audio frames resent.
        """
        old = self.connection
        if old is not None and old is not connection:
            old.send_message(
                server_message(
                    "error",
                    code="replaced",
                    fatal=True,
                    message="this session was resumed on another connection",
                )
            )
            old.close(4001, "replaced")
            self.downlink.detach(old)
        self.connection = connection
        self.detached_at = None
        self.clock.reset()
        if last_message_seq is not None:
            for message in self._sent:
                if message["seq"] > last_message_seq:
                    connection.send_message(message)
        resent = self.downlink.attach(connection, last_audio_seq)
        self.last_activity = now()  # a connection is no input: the start timeout still runs
        self._changed.set()
        return resent

    def detach(self, connection: Connection) -> None:
        if self.connection is not connection:
            return
        self.connection = None
        self.downlink.detach(connection)
        if not self.closed:
            self.detached_at = now()
        self._changed.set()

    def feed(self, samples: PCM16, arrival: float | None = None) -> None:
        if not self.got_going:
            self.got_going = True
            self._changed.set()
        duration = len(samples) / self.input_rate
        frame = AudioFrame(samples, self.input_rate, self.clock.stamp(duration, arrival))
        if self.call is not None:
            self.call.hear(frame)
        self.engine.feed_audio(frame)
        if self.tap.listener is not None:
            self.tap.caller(frame)

    def press_key(self, digit: str) -> None:
        """A keypad digit from the caller (DTMF): on the timeline, and to the agent as input."""
        self.touch()
        self.engine.press_key(digit)

    def touch(self) -> None:
        """The client did something (text, interrupt, a reconnect): the session is alive and in use."""
        self.got_going = True
        self.last_activity = now()
        self._changed.set()

    def send(self, message: dict[str, Any]) -> None:
        """Number a message, keep it for replay after a reconnect, and deliver it if someone listens."""
        message["seq"] = self._next_message_seq
        self._next_message_seq += 1
        self._sent.append(message)
        if self.connection is not None:
            self.connection.send_message(message)

    def resumed(self) -> SessionResumed:
        """A client came back (``resume``): on the timeline, with the reply still to come and the caller's
        words it answers (they are in no ``history`` yet: a turn is remembered once answered)."""
        answering = self.engine.answering
        away = None if self.detached_at is None else round((now() - self.detached_at) * 1000, 1)
        data = {
            "reply_id": answering.reply_id if answering is not None else None,
            "answering": answering.text if answering is not None else None,
            "away_ms": away,
        }
        event = Event(
            EventType.SESSION_RESUMED, self.id, now(), {k: v for k, v in data.items() if v is not None}
        )
        self.timeline.emit(event)
        return event.payload(SessionResumed)

    def history(self) -> list[dict[str, str]]:
        """The conversation so far as the agent remembers it (what the user heard), for a resumed UI."""
        return [
            {"role": m.role, "text": m.content}
            for m in self.engine.context.messages
            if m.role in ("user", "assistant") and m.content
        ]

    def _on_event(self, event: Event) -> None:
        if event.type is EventType.SESSION_ENDED and self.end_reason is None:
            # Ended by the engine itself (the agent hung up, its provider is gone): the client is told
            # that reason, as the call's record is, not a bare "ended".
            self.end_reason = event.payload(SessionEnded).reason
        if event.type not in _NOT_ACTIVITY:
            self.last_activity = event.t
            self._changed.set()
        for message in messages_for(event):
            self.send(message)
