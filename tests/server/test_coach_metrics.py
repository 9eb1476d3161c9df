"""Coaching shows on /metrics: triggers by name (a team's own as custom), hint cards and their latency."""

from __future__ import annotations

from parley.engine.events import Event, EventType
from parley.server.metrics import ServerMetrics


def _value(metrics: ServerMetrics, line_start: str) -> float:
    for line in metrics.render().decode().splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_triggers_and_hints_are_counted() -> None:
    metrics = ServerMetrics()
    for trigger in ("price_objection", "price_objection", "our_own_rule"):
        metrics.observe(Event(EventType.COACH_TRIGGER, "call", 1.0, {"trigger": trigger}))
    card = {"trigger": "price_objection", "text": "Tie the cost to the value they named."}
    metrics.observe(Event(EventType.COACH_HINT, "call", 1.1, {**card, "source": "rule", "latency_ms": 40.0}))
    metrics.observe(
        Event(
            EventType.COACH_HINT,
            "call",
            2.5,
            {**card, "source": "llm", "latency_ms": 1500.0, "refines": True},
        )
    )
    assert _value(metrics, 'parley_coach_triggers_total{trigger="price_objection"}') == 2
    assert _value(metrics, 'parley_coach_triggers_total{trigger="custom"}') == 1
    assert _value(metrics, 'parley_coach_hints_total{source="rule"}') == 1
    assert _value(metrics, 'parley_coach_hints_total{source="llm"}') == 1
    assert _value(metrics, "parley_coach_hint_seconds_count") == 1, "only the card's first showing is timed"
