"""What the engine needs from a transport: somewhere to send paced audio, and a way to flush it."""

from __future__ import annotations

from typing import Protocol

from parley.audio.frame import AudioFrame


class AudioOutput(Protocol):
    """The outbound half of a transport.

    ``write`` gets frames slightly ahead of their play time (``frame.timestamp``, monotonic); ``clear``
    drops everything the peer has buffered but not yet played, so a barge-in silences the agent at once.
    """

    sample_rate: int

    async def write(self, frame: AudioFrame) -> None: ...

    async def clear(self) -> None: ...
