"""A short call's timeline, as a session emits it, for tests that need one without running a session."""

from __future__ import annotations

import time

from parley.engine.events import Event, EventType
from parley.timeline.bus import Sequencer
from parley.timeline.envelope import Envelope


def events(session: str, t0: float | None = None) -> list[Event]:
    """A call that began ten seconds ago (by default)."""
    t0 = time.monotonic() - 10.0 if t0 is None else t0
    items: list[tuple[EventType, float, dict[str, object]]] = [
        (EventType.SESSION_STARTED, 0.0, {"agent": "a"}),
        (EventType.SPEECH_STARTED, 0.5, {"at": t0 + 0.4}),
        (EventType.SPEECH_STOPPED, 1.6, {"at": t0 + 1.5}),
        (EventType.TRANSCRIPT_FINAL, 1.7, {"text": "Hello there", "audio_seconds": 1.4, "source": "speech"}),
        (EventType.LLM_COMPLETED, 1.8, {"reply_id": "r1", "input_tokens": 30, "output_tokens": 4}),
        (EventType.AGENT_TEXT, 1.9, {"reply_id": "r1", "segment": 0, "text": "Hi! How can I help?"}),
        (EventType.AGENT_AUDIO_STARTED, 2.0, {"reply_id": "r1", "at": t0 + 2.0, "v2v_ms": 500.0}),
        (EventType.AGENT_AUDIO_STOPPED, 3.0, {"reply_id": "r1", "at": t0 + 3.0}),
        (EventType.AGENT_REPLY_DONE, 3.0, {"reply_id": "r1", "input_tokens": 30, "output_tokens": 4}),
        (EventType.SESSION_ENDED, 3.5, {"reason": "hangup"}),
    ]
    return [Event(kind, session, t0 + dt, data) for kind, dt, data in items]


def conversation(session: str) -> list[Envelope]:
    sequencer = Sequencer()
    return [sequencer.stamp(event) for event in events(session)]
