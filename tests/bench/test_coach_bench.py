"""``parley bench coach``: its script is what it promises, and its figures are counted right."""

from __future__ import annotations

import numpy as np

from parley.analysis.triggers import TriggerMatcher
from parley.bench.coach import _heard_alone, _report, _residual, _Said
from parley.bench.coach_cases import CALLS, all_lines
from parley.engine.coaching import CoachingSettings
from parley.engine.events import Event, EventType


def test_the_script_has_twenty_lines_and_about_half_are_triggers() -> None:
    lines = [line for _, line in all_lines()]
    marked = [line for line in lines if line.expect]
    assert len(lines) >= 20 and 0.35 <= len(marked) / len(lines) <= 0.6
    known = set(TriggerMatcher(CoachingSettings(enabled=True)).triggers)
    assert {line.expect for line in marked} <= known
    assert {line.role for line in lines} == {"customer", "rep"}


def _tone(seconds: float, level: float, hz: float = 700.0) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (level * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_a_whisper_in_the_customers_audio_is_found_and_a_clean_mix_is_not() -> None:
    rep = _tone(1.0, 0.3, 300.0)
    whisper = np.zeros_like(rep)
    whisper[8000:12000] = _tone(0.25, 0.05)
    spans = [(0.5, 0.8)]  # seconds after the origin, the whisper's time
    clean = _residual(rep.copy(), [rep], spans, origin=0.0)
    leaked = _residual((rep.astype(np.int32) + whisper).astype(np.int16), [rep], spans, origin=0.0)
    assert clean == -100.0
    assert leaked > -40.0
    # outside the whisper's ticks nothing is measured
    assert _residual((rep.astype(np.int32) + whisper).astype(np.int16), [rep], [(0.0, 0.3)], 0.0) == -100.0


def test_what_a_listener_heard_of_each_side_is_measured_where_that_side_spoke_alone() -> None:
    customer = np.concatenate([_tone(0.5, 0.3, 300.0), np.zeros(8000, np.int16)])
    rep = np.concatenate([np.zeros(8000, np.int16), _tone(0.5, 0.03, 500.0)])
    both = (customer.astype(np.int32) + rep).astype(np.int16)
    assert -14.0 < _heard_alone(both, customer, rep) < -12.0  # a 0.3 sine: about -13.5 dBFS
    assert -34.0 < _heard_alone(both, rep, customer) < -32.0  # a 0.03 sine: about -33.5 dBFS
    assert _heard_alone(customer, rep, customer) == -100.0, (
        "a listener who never got the rep hears nothing of it"
    )


def _event(kind: EventType, t: float, **data: object) -> Event:
    return Event(kind, "bench", t, dict(data))


def test_precision_recall_and_latency_are_counted_per_line() -> None:
    name = CALLS[0].name
    lines = [
        _Said(0, "customer", "pricing_question", speech_end=10.0, text="how much is it"),
        _Said(1, "customer", None, speech_end=20.0, text="sounds fair"),
        _Said(2, "customer", "price_objection", speech_end=30.0, text="too expensive"),
    ]
    events = [
        _event(EventType.COACH_TRIGGER, 10.8, trigger="pricing_question", text="how much is it"),
        _event(
            EventType.COACH_HINT,
            10.9,
            trigger="pricing_question",
            source="rule",
            refines=False,
            text="Give a range.",
        ),
        _event(
            EventType.COACH_HINT,
            12.0,
            trigger="pricing_question",
            source="llm",
            refines=True,
            latency_ms=1200,
        ),
        _event(EventType.COACH_TRIGGER, 20.9, trigger="price_objection", text="sounds fair"),
        _event(
            EventType.COACH_HINT,
            21.0,
            trigger="price_objection",
            source="rule",
            refines=False,
            text="Give a range.",
        ),
    ]
    call = {
        "name": name,
        "lines": lines,
        "events": events,
        "leak": -100.0,
        "to_rep": -20.0,
        "coach_heard": {"customer": -20.0, "rep": -20.0},
    }
    report = _report([call], use_llm=True)
    assert report["precision"] == 0.5 and report["recall"] == 0.5  # one right, one wrong, one missed
    assert report["hint_latency_p50_ms"] == 900.0  # line end to its card, not to the rewrite
    assert report["hints_rewritten_by_llm"] == 1 and report["llm_rewrite_p50_ms"] == 1200.0
    assert report["whisper_leak"] is False
    missed = [d for d in report["detail"] if "missed" in d]
    assert missed == [{"call": name, "line": 2, "missed": "price_objection", "heard": "too expensive"}]
