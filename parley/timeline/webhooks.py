"""The outbound webhook events a stored timeline batch causes: ``transcript.final`` and ``tool.called``.

Here, not in ``store/webhooks.py`` (the outbox itself), because reading timeline events takes their typed
payloads, and the store knows nothing of the engine.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.engine.event_payloads import Recorded, ToolCalled, ToolResult, TranscriptFinal, payload_or_none
from parley.engine.events import EventType
from parley.store.models import Call, CallEvent
from parley.store.webhooks import enqueue_event
from parley.timeline.digest import Record


async def enqueue_timeline(session: AsyncSession, call: Call, records: Iterable[Record]) -> None:
    """``transcript.final`` and ``tool.called`` for timeline events just stored (records with ``seq``,
    ``type`` and ``data``), in the caller's transaction; keyed by the event, so a redelivered batch adds
    nothing. A damaged record (a required field missing) is logged and skipped."""
    batch = list(records)
    for record in batch:
        key = f"{call.id}:{record.seq}"
        if record.type == EventType.TRANSCRIPT_FINAL:
            final = payload_or_none(record, TranscriptFinal)
            if final is None:
                continue
            said = {"call_id": call.id, "speaker": "user", "text": final.text, "source": final.source}
            await enqueue_event(session, call.org_id, "transcript.final", said, key)
        elif record.type == EventType.TOOL_RESULT:
            result = payload_or_none(record, ToolResult)
            if result is None:
                continue
            called = {
                "call_id": call.id,
                "tool": result.tool,
                "tool_call_id": result.call_id,
                "arguments": await _tool_arguments(session, call.id, result.call_id, batch),
                "ok": result.ok,
                "result": result.result,
                "latency_ms": result.latency_ms,
            }
            await enqueue_event(session, call.org_id, "tool.called", called, key)


async def _tool_arguments(
    session: AsyncSession, call_id: str, tool_call_id: str, batch: Sequence[Recorded]
) -> Mapping[str, Any] | None:
    """The arguments of the ``tool.call`` event a result answers (in this batch, or stored before)."""
    for record in batch:
        if record.type == EventType.TOOL_CALL:
            called = payload_or_none(record, ToolCalled)
            if called is not None and called.call_id == tool_call_id:
                return called.arguments
    stored = await session.scalars(
        select(CallEvent)
        .where(CallEvent.call_id == call_id, CallEvent.type == str(EventType.TOOL_CALL))
        .order_by(CallEvent.seq.desc())
    )
    for event in stored:
        called = payload_or_none(event, ToolCalled)
        if called is not None and called.call_id == tool_call_id:
            return called.arguments
    return None
