"""The tap on a live session's output through which supervisors listen in (``platform/supervision.py``).

It lives apart from the supervision itself so that every live session carries it at the cost of one
``None`` check per frame, without the session's module importing what supervision needs.
"""

from __future__ import annotations

from typing import Protocol

import structlog

from parley.audio.frame import AudioFrame
from parley.engine.transport import AudioOutput, ConfirmsPlayout

log = structlog.get_logger("parley.rooms.tap")


class TapListener(Protocol):
    """Who the tap tells about the call's audio (a ``SupervisedCall``); none of these may wait."""

    def caller(self, frame: AudioFrame) -> None: ...

    def agent(self, frame: AudioFrame) -> None: ...

    def agent_cleared(self) -> None: ...

    async def close(self, reason: str) -> None: ...


class SupervisionTap:
    """The session's output with a copy of what the agent says for whoever supervises.

    Nobody supervising costs one ``None`` check per frame. A frame is copied once the line took it, so
    a supervisor hears what the caller hears; the copy never waits, so it never holds the agent up.
    """

    def __init__(self, inner: AudioOutput) -> None:
        self.inner = inner
        """The line to the caller (and the recorder): where a barging supervisor's voice goes too."""
        self.sample_rate = inner.sample_rate
        self.listener: TapListener | None = None

    async def write(self, frame: AudioFrame) -> None:
        await self.inner.write(frame)
        listener = self.listener
        if listener is not None:
            try:
                listener.agent(frame)
            except Exception:  # supervisors miss a frame; the caller must not miss the reply
                log.exception("copying the agent's audio to supervisors failed")

    async def clear(self) -> None:
        listener = self.listener
        if listener is not None:
            listener.agent_cleared()
        await self.inner.clear()

    def heard_until(self, cut: float) -> float:
        return self.inner.heard_until(cut) if isinstance(self.inner, ConfirmsPlayout) else cut

    def caller(self, frame: AudioFrame) -> None:
        """A frame the caller sent (the transport calls this for every one; nothing while unsupervised)."""
        listener = self.listener
        if listener is not None:
            listener.caller(frame)
