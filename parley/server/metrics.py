"""Prometheus metrics, fed by each session's timeline (and by the transport for wire-level problems).

The engine knows nothing of Prometheus: every figure here is derived from timeline events that also go
to persistence, monitors and webhooks.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from parley.analysis.triggers import BUILTIN_TRIGGERS
from parley.engine.events import Event, EventType

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
        """Timeline subscriber."""
        kind, data, sid = event.type, event.data, event.session_id
        if kind is EventType.SESSION_STARTED:
            self._started[sid] = event.t
            self.active_sessions.inc()
        elif kind is EventType.SESSION_ENDED:
            self.active_sessions.dec()
            started = self._started.pop(sid, None)
            if started is not None:
                self.session_duration.observe(event.t - started)
            self._speech_end.pop(sid, None)
            self.sessions.labels(reason=str(data.get("reason", "unknown"))).inc()
        elif kind is EventType.SPEECH_STOPPED:
            self._speech_end[sid] = data["at"]
        elif kind is EventType.TRANSCRIPT_INTERIM and data.get("stable"):
            speech_end = self._speech_end.get(sid)
            if speech_end is not None:
                self.asr_latency.observe(max(0.0, event.t - speech_end))
        elif kind is EventType.AGENT_AUDIO_STARTED and data.get("v2v_ms") is not None:
            if data["v2v_ms"] >= 0:
                self.voice_to_voice.observe(data["v2v_ms"] / 1000)
        elif kind is EventType.LLM_FIRST_TOKEN:
            self.llm_first_token.observe(data["latency_ms"] / 1000)
        elif kind is EventType.TTS_FIRST_BYTE:
            self.tts_first_byte.observe(data["latency_ms"] / 1000)
        elif kind is EventType.BARGE_IN:
            self.barge_ins.inc()
            if data.get("latency_ms") is not None:
                self.barge_in_latency.observe(data["latency_ms"] / 1000)
        elif kind is EventType.TOOL_RESULT:
            outcome = "ok" if data.get("ok") else "error"
            self.tool_calls.labels(tool=str(data.get("tool")), outcome=outcome).inc()
        elif kind is EventType.AUDIO_UNDERRUN:
            self.underruns.inc()
        elif kind is EventType.INPUT_OVERFLOW:
            self.input_overflows.inc()
        elif kind is EventType.COACH_TRIGGER:
            trigger = str(data.get("trigger"))
            self.coach_triggers.labels(
                trigger=trigger if trigger in _BUILTIN_TRIGGER_NAMES else "custom"
            ).inc()
        elif kind is EventType.COACH_HINT:
            self.coach_hints.labels(source=str(data.get("source"))).inc()
            if not data.get("refines") and data.get("latency_ms") is not None:
                self.coach_hint_latency.observe(data["latency_ms"] / 1000)
        elif kind is EventType.ERROR:
            self.errors.labels(type=f"engine.{data.get('where', 'unknown')}").inc()
        elif kind is EventType.PROVIDER_FAILOVER:
            self.provider_failovers.labels(
                str(data.get("role")), str(data.get("from")), str(data.get("to"))
            ).inc()

    def protocol_error(self, code: str) -> None:
        self.errors.labels(type=f"protocol.{code}").inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
