"""The platform on the Redis timeline: sessions' events reach the database through a consumer group."""

from __future__ import annotations

import uuid
from pathlib import Path

from parley.config import Settings
from parley.platform.runtime import Platform
from tests.timeline.samples import events


async def test_calls_are_persisted_through_redis_streams(db_url: str, redis_url: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=db_url,
        redis_url=redis_url,
        timeline_stream=f"test:{uuid.uuid4().hex[:8]}",
    )
    platform = await Platform.open(settings)
    try:
        call, _ = await platform.calls.create(
            platform.default_org_id, direction="inbound", transport="twilio"
        )
        for event in events(call.session_id):
            platform.bus.emit(event)
        await platform.settle()
        detail = await platform.calls.detail(platform.default_org_id, call.id)
        pending = await platform.bus.client.xpending(settings.timeline_stream, "persister")  # type: ignore[attr-defined]
    finally:
        await platform.close()
    assert detail.status == "completed" and len(detail.events) == 10
    assert [t.text for t in detail.transcript] == ["Hello there", "Hi! How can I help?"]
    assert {line.kind for line in detail.costs.lines} == {
        "asr_seconds",
        "llm_input_tokens",
        "llm_output_tokens",
        "tts_characters",
        "telephony_minutes",
    }
    assert pending["pending"] == 0, "every entry was acknowledged"
    assert not (tmp_path / "timeline").exists(), "no journal: Redis is the durable log"
