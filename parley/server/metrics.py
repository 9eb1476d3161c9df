"""Prometheus metrics, fed by each session's timeline (and by the transport for wire-level problems).

The engine knows nothing of Prometheus: every figure here is derived from timeline events that also go
to persistence, monitors and webhooks.
"""

from __future__ import annotations

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from parley.analysis.trigger_catalog import BUILTIN_TRIGGERS
from parley.engine import event_payloads as ev
from parley.engine.event_payloads import MalformedPayload, payload_or_none
from parley.engine.events import Event, EventType

log = structlog.get_logger("parley.server.metrics")

_BUILTIN_TRIGGER_NAMES = frozenset(t.name for t in BUILTIN_TRIGGERS)

LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)
NOTIFICATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 900, 3600)

# The ``*_created`` series (start time of every counter) mean nothing for a live process's scrape.
disable_created_metrics()  # type: ignore[no-untyped-call]


class ServerMetrics:
    """One registry per app (not the global one), so several apps can live in one process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_sessions = Gauge("parley_active_sessions", "Live sessions on this node", registry=r)
        self.sessions = Counter("parley_sessions", "Sessions ended, by reason", ["reason"], registry=r)
        self.session_duration = Histogram(
            "parley_session_duration_seconds",
            "Length of ended sessions",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.voice_to_voice = Histogram(
            "parley_voice_to_voice_seconds",
            "End of user speech to first agent audio",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.asr_latency = Histogram(
            "parley_asr_latency_seconds",
            "End of user speech to its final transcript",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_first_token = Histogram(
            "parley_llm_first_token_seconds",
            "LLM request to first token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tts_first_byte = Histogram(
            "parley_tts_first_byte_seconds", "TTS request to first audio", buckets=LATENCY_BUCKETS, registry=r
        )
        self.barge_ins = Counter("parley_barge_ins", "User speech that paused the agent", registry=r)
        self.barge_in_latency = Histogram(
            "parley_barge_in_detection_seconds",
            "User speech onset to the agent pausing",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tool_calls = Counter(
            "parley_tool_calls", "Tool calls by tool and outcome", ["tool", "outcome"], registry=r
        )
        self.errors = Counter("parley_errors", "Errors by type", ["type"], registry=r)
        self.provider_failovers = Counter(
            "parley_provider_failovers",
            "Requests a provider could not serve, asked of the next in its role's chain",
            ["role", "from", "to"],
            registry=r,
        )
        self.underruns = Counter(
            "parley_audio_underruns", "Agent audio written later than its play time", registry=r
        )
        self.input_overflows = Counter(
            "parley_audio_input_overflows", "Inbound frames dropped by a full queue", registry=r
        )
        self.outbound_dropped = Counter(
            "parley_outbound_frames_dropped",
            "Outbound messages dropped because a client did not keep up",
            registry=r,
        )
        self.slow_client_closes = Counter(
            "parley_slow_client_closes",
            "Connections closed because the client stopped reading what the server sent",
            ["transport"],
            registry=r,
        )
        self.coach_triggers = Counter(
            "parley_coach_triggers",
            "Coaching triggers fired (a team's own triggers are counted as custom)",
            ["trigger"],
            registry=r,
        )
        self.coach_hints = Counter(
            "parley_coach_hints",
            "Hint cards shown (rule) and rewritten by the model (llm)",
            ["source"],
            registry=r,
        )
        self.supervisor_joins = Counter(
            "parley_supervisor_joins",
            "Supervisors who joined a live AI call, by the mode they came in (listen, whisper, barge)",
            ["mode"],
            registry=r,
        )
        self.coach_hint_latency = Histogram(
            "parley_coach_hint_seconds", "Trigger to hint card", buckets=LATENCY_BUCKETS, registry=r
        )
        self.notifications = Counter(
            "parley_notifications",
            "Lead notification attempts by channel and result (sent, retry, failed; SMS: delivered, "
            "undelivered)",
            ["channel", "result"],
            registry=r,
        )
        self.notification_latency = Histogram(
            "parley_notification_latency_seconds",
            "Lead submitted to its notification accepted by the SMTP server or Twilio",
            buckets=NOTIFICATION_BUCKETS,
            registry=r,
        )
        self._speech_end: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def notification(self, channel: str, result: str, latency_s: float | None = None) -> None:
        """The notification worker's (and Twilio's SMS callbacks') report of one attempt."""
        self.notifications.labels(channel=channel, result=result).inc()
        if latency_s is not None:
            self.notification_latency.observe(latency_s)

    def observe(self, event: Event) -> None:
        """Timeline subscriber. A damaged event (a required field missing) is logged and not counted: a
        subscriber that raised would be dropped, and every later call would go unmeasured."""
        try:
            self._observe(event)
        except MalformedPayload as exc:
            log.warning("event not measured", event_type=exc.event_type, missing=exc.missing)

    def _observe(self, event: Event) -> None:
        kind, sid = event.type, event.session_id
        if kind is EventType.SESSION_STARTED:
            self._started[sid] = event.t
            self.active_sessions.inc()
        elif kind is EventType.SESSION_ENDED:
            self.active_sessions.dec()
            started = self._started.pop(sid, None)
            if started is not None:
                self.session_duration.observe(event.t - started)
            self._speech_end.pop(sid, None)
            ended = payload_or_none(event, ev.SessionEnded)
            self.sessions.labels(reason=ended.reason if ended is not None else "unknown").inc()
        elif kind is EventType.SPEECH_STOPPED:
            self._speech_end[sid] = event.payload(ev.SpeechStopped).at
        elif kind is EventType.TRANSCRIPT_INTERIM and event.payload(ev.TranscriptInterim).stable:
            speech_end = self._speech_end.get(sid)
            if speech_end is not None:
                self.asr_latency.observe(max(0.0, event.t - speech_end))
        elif kind is EventType.AGENT_AUDIO_STARTED:
            v2v_ms = event.payload(ev.AgentAudioStarted).v2v_ms
            if v2v_ms is not None and v2v_ms >= 0:
                self.voice_to_voice.observe(v2v_ms / 1000)
        elif kind is EventType.LLM_FIRST_TOKEN:
            _observe_ms(self.llm_first_token, event.payload(ev.LlmFirstToken).latency_ms)
        elif kind is EventType.TTS_FIRST_BYTE:
            _observe_ms(self.tts_first_byte, event.payload(ev.TtsFirstByte).latency_ms)
        elif kind is EventType.BARGE_IN:
            self.barge_ins.inc()
            _observe_ms(self.barge_in_latency, event.payload(ev.BargeIn).latency_ms)
        elif kind is EventType.TOOL_RESULT:
            result = event.payload(ev.ToolResult)
            self.tool_calls.labels(tool=result.tool, outcome="ok" if result.ok else "error").inc()
        elif kind is EventType.AUDIO_UNDERRUN:
            self.underruns.inc()
        elif kind is EventType.INPUT_OVERFLOW:
            self.input_overflows.inc()
        elif kind is EventType.COACH_TRIGGER:
            trigger = event.payload(ev.CoachTrigger).trigger
            self.coach_triggers.labels(
                trigger=trigger if trigger in _BUILTIN_TRIGGER_NAMES else "custom"
            ).inc()
        elif kind is EventType.COACH_HINT:
            hint = event.payload(ev.CoachHint)
            self.coach_hints.labels(source=str(hint.source)).inc()
            if not hint.refines:
                _observe_ms(self.coach_hint_latency, hint.latency_ms)
        elif kind is EventType.ERROR:
            where = event.payload(ev.Error).where
            self.errors.labels(type=f"engine.{'unknown' if where is None else where}").inc()
        elif kind is EventType.PROVIDER_FAILOVER:
            hop = event.payload(ev.ProviderFailover)
            self.provider_failovers.labels(hop.role, hop.from_, hop.to).inc()

    def protocol_error(self, code: str) -> None:
        self.errors.labels(type=f"protocol.{code}").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


def _observe_ms(histogram: Histogram, milliseconds: float | None) -> None:
    """A latency the engine measured, in seconds; nothing when the event did not carry it."""
    if milliseconds is not None:
        histogram.observe(milliseconds / 1000)
