"""An engine event as it travels through the timeline: numbered within its session and wall-clock stamped."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from typing import Any

from parley.engine.events import Event
from parley.store.types import plain_json


@dataclass(frozen=True, slots=True)
class Envelope:
    session_id: str
    seq: int
    """1, 2, 3 … within the session: the identity consumers deduplicate on and live feeds resume from."""
    type: str
    t: float
    """The producer's monotonic clock, as on the engine event."""
    wall: float
    """Unix time when the event was emitted."""
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""
    """The backend's delivery id (a Redis stream entry id); acknowledgements use it."""

    @classmethod
    def wrap(cls, event: Event, seq: int, wall: float | None = None) -> Envelope:
        if wall is None:
            wall = time.time() - (time.monotonic() - event.t)
        return cls(event.session_id, seq, str(event.type), event.t, wall, plain_json(event.data))

    def with_id(self, ident: str) -> Envelope:
        return replace(self, id=ident)

    def dumps(self) -> str:
        return json.dumps(
            {
                "s": self.session_id,
                "q": self.seq,
                "y": self.type,
                "t": self.t,
                "w": self.wall,
                "d": self.data,
            },
            separators=(",", ":"),
            default=str,
        )

    @classmethod
    def loads(cls, raw: str | bytes, ident: str = "") -> Envelope:
        obj = json.loads(raw)
        return cls(
            obj["s"], int(obj["q"]), obj["y"], float(obj["t"]), float(obj["w"]), obj.get("d") or {}, ident
        )
