"""``parley bench coach``: its script is what it promises, its figures are counted right, and it runs
through real WebSocket legs of a server in a child process."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import psutil
import pytest

from parley.analysis.triggers import TriggerMatcher
from parley.bench.coach import _heard_alone, _report, _residual, _Said
from parley.bench.coach_cases import CALLS, Line, SalesCall, all_lines
from parley.bench.coach_ws import _place, _Sent, _whisper_spans, run_ws_coach_bench
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
            text="Start from the smallest plan.",
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

    # A whisper the rep never heard leaves nothing to leak: that is no evidence of "no leak".
    silent = _report([{**call, "to_rep": -100.0}], use_llm=True, legs="websocket")
    assert silent["whisper_leak"] is None and silent["legs"] == "websocket"


# --- over the wire: lines found where they arrived ---------------------------------------------------------


def test_a_line_is_found_in_a_downlink_however_late_it_arrived_and_a_leak_beside_it_stays() -> None:
    rate = 16000
    rep = _tone(0.5, 0.3, 300.0)
    sent = _Sent("rep", rep, captured=1.0)  # captured 1 s after the origin of the downlink
    delay = 947  # what the wire and the room's jitter buffer added (59 ms)
    downlink = np.zeros(3 * rate, np.int16)
    start = rate + delay
    downlink[start : start + rep.size] = rep
    placed = _place([sent], downlink, origin=0.0)
    assert np.array_equal(placed, downlink), "the line is rebuilt sample for sample where it arrived"

    whisper = np.zeros_like(downlink)
    whisper[start + 2000 : start + 6000] = _tone(0.25, 0.05)
    leaked = (downlink.astype(np.int32) + whisper).astype(np.int16)
    span = [(1.0, 1.6)]
    assert _residual(downlink, [_place([sent], downlink, 0.0)], span, 0.0) == -100.0
    assert _residual(leaked, [_place([sent], leaked, 0.0)], span, 0.0) > -40.0

    # A line that never arrived is expected where the others did: its absence is not hidden.
    other = _Sent("rep", rep, captured=2.0)
    expected = _place([sent, other], downlink, origin=0.0)
    assert np.array_equal(expected[2 * rate + delay : 2 * rate + delay + rep.size], rep)


def test_whisper_spans_are_what_the_rep_heard_beyond_the_customer_after_a_whispered_card() -> None:
    rate = 16000
    customer = np.zeros(6 * rate, np.int16)
    customer[rate : 2 * rate] = _tone(1.0, 0.3, 220.0)
    whisper = np.zeros_like(customer)
    whisper[int(2.5 * rate) : int(3.5 * rate)] = _tone(1.0, 0.1, 440.0)
    heard = (customer.astype(np.int32) + whisper).astype(np.int16)
    spans = _whisper_spans(heard, customer, [2.3], origin=0.0)
    assert len(spans) == 1 and spans[0][0] == 2.3 and 3.49 <= spans[0][1] <= 3.52
    assert _whisper_spans(customer, customer, [2.3], origin=0.0) == [], "a whisper never played: no span"


# --- the whole bench over WebSocket legs, on the fast engines ---------------------------------------------

SHORT_CALL = SalesCall(
    "renewal",
    ("HubSpot",),
    (
        Line("rep", "Hi, this is Dana from Brightline, calling about your renewal."),
        Line("customer", "Honestly, that's way too expensive for a team our size.", "price_objection"),
        Line("rep", "I understand, let me walk you through what changed."),
        Line("customer", "HubSpot quoted us a lot less last month.", "competitor_mention"),
    ),
)


async def test_the_bench_plays_a_call_through_websocket_legs_of_a_server_in_a_child_process() -> None:
    said: list[str] = []
    before = {p.pid for p in psutil.Process().children(recursive=True)}  # e.g. the suite's PostgreSQL
    report: dict[str, Any] = await run_ws_coach_bench(
        said.append, calls=[SHORT_CALL], fast=True, gap_s=0.3, settle_s=1.0
    )
    assert report["legs"] == "websocket"
    assert any("child process" in line for line in said)
    assert report["precision"] == 1.0 and report["recall"] == 1.0
    assert report["hint_sources"] == {"rule": 2} and report["hints_rewritten_by_llm"] == 2
    assert report["hint_latency_p50_ms"] is not None and report["hint_latency_p50_ms"] > 0
    # The whisper (the tone voice's 440 Hz) reached the rep's socket and nothing of it the customer's.
    assert report["whisper_to_rep_dbfs"] > -40.0 and report["whisper_measured_s"] > 0.5
    assert report["whisper_leak"] is False and report["whisper_leak_dbfs"] == -100.0
    assert all(level > -40.0 for level in report["coach_hears_dbfs"]["renewal"].values())
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    assert left == [], "the server process was left running"


async def test_a_coach_heard_by_everyone_is_measured_as_a_leak_over_the_wire(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A supervisor switches the AI coach from whisper to barge as the room opens: the customer's socket
    now carries the hint's voice, and the bench must say so."""
    post = httpx.AsyncClient.post

    async def barge_in(self: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
        answer = await post(self, url, **kwargs)
        if url == "/v1/rooms" and answer.status_code == 201:
            room = answer.json()["id"]
            switched = await self.patch(f"/v1/rooms/{room}/participants/ai-coach", json={"mode": "barge"})
            assert switched.status_code == 200, switched.text
        return answer

    monkeypatch.setattr(httpx.AsyncClient, "post", barge_in)
    call = SalesCall("barge", (), SHORT_CALL.lines[1:3])
    report = await run_ws_coach_bench(calls=[call], fast=True, use_llm=False, gap_s=0.3, settle_s=1.0)
    assert report["whisper_leak"] is True
    assert report["whisper_leak_dbfs"] > -40.0
