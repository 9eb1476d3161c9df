"""Forward compatibility: events with no typed payload (``metrics``, or a type a newer version adds) are
recorded and passed on like any other, and the typed readers step over them."""

from __future__ import annotations

from parley.engine.event_payloads import payload_class, problems
from parley.engine.events import Event, EventType, Timeline
from parley.platform.usage import measure
from parley.server.metrics import ServerMetrics
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.tenants import TenantRepository
from parley.timeline.digest import build_turns, latency_summary
from parley.timeline.envelope import Envelope
from parley.timeline.persister import Persister
from parley.transports.ws_protocol import messages_for
from tests.timeline.samples import conversation


async def test_events_without_a_payload_class_are_stored_and_read_back(db: Database) -> None:
    async with db.session() as session:
        org = await TenantRepository(session).ensure_org("acme")
        call = await CallRepository(session).create(org.id, direction="web", transport="websocket")
    known = conversation(call.session_id)
    end = known[-1]
    newer = [
        Envelope(call.session_id, end.seq + 1, "metrics", end.t, end.wall, {"cpu": 0.5}),
        Envelope(call.session_id, end.seq + 2, "call.sentiment", end.t, end.wall, {"score": [0.1, 0.9]}),
    ]
    assert [payload_class(e.type) for e in newer] == [None, None]
    await Persister(db).store([*known, *newer])

    async with db.session() as session:
        stored = await CallRepository(session).events(call.id)
    assert [(e.type, e.data) for e in stored[-2:]] == [
        ("metrics", {"cpu": 0.5}),
        ("call.sentiment", {"score": [0.1, 0.9]}),
    ]
    assert [p for e in stored for p in problems(e)] == []
    # The typed readers give the same answers with the newcomers in the record as without them.
    assert build_turns(stored) == build_turns(known)
    assert latency_summary(stored) == latency_summary(known)
    assert measure(stored, transport="websocket", duration_s=3.5) == measure(
        known, transport="websocket", duration_s=3.5
    )


def test_a_live_event_without_a_payload_reaches_every_subscriber() -> None:
    timeline, metrics, sent = Timeline(), ServerMetrics(), []
    timeline.subscribe(metrics.observe)
    timeline.subscribe(lambda event: sent.extend(messages_for(event)))
    timeline.emit(Event(EventType.METRICS, "s1", 1.0, {"anything": {"nested": True}}))
    timeline.emit(Event(EventType.TRANSCRIPT_FINAL, "s1", 1.1, {"text": "still heard", "source": "speech"}))
    assert [e.type for e in timeline.events] == [EventType.METRICS, EventType.TRANSCRIPT_FINAL]
    assert [m["text"] for m in sent] == ["still heard"], "no subscriber was dropped on the way"
