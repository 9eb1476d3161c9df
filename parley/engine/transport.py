"""What the engine needs from a transport: somewhere to send paced audio, a way to flush it, and what the
line can do besides (confirm playout, transfer)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from parley.audio.frame import AudioFrame


class AudioOutput(Protocol):
    """The outbound half of a transport.

    ``write`` gets frames slightly ahead of their play time (``frame.timestamp``, monotonic); ``clear``
    drops everything the peer has buffered but not yet played, so a barge-in silences the agent at once.
    """

    sample_rate: int

    async def write(self, frame: AudioFrame) -> None: ...

    async def clear(self) -> None: ...


@runtime_checkable
class ConfirmsPlayout(Protocol):
    """An output that learns when its listener really heard the audio (Twilio echoes marks).

    The engine's own clock says when a frame was due to play; a phone network plays it later. On barge-in
    the session asks what was heard by ``cut`` on its clock and gets back the play time (same clock as
    ``AudioFrame.timestamp``) before which audio reached the listener.
    """

    def heard_until(self, cut: float) -> float: ...


class ControlUnavailable(RuntimeError):
    """The line this call is on cannot do that (a browser call cannot be transferred)."""


TransferHandler = Callable[[str], Awaitable[None]]
DtmfHandler = Callable[[str], Awaitable[None]]
"""Play keypad digits (``0-9 * # A-D``) to the far end; returns once they were heard."""


class CallControls:
    """What tools may ask of the line a call is on. A transport fills in what its line can do once it is
    attached, so tools are built before the connection exists and the engine never learns the wire."""

    def __init__(self) -> None:
        self.transfer_handler: TransferHandler | None = None
        self.dtmf_handler: DtmfHandler | None = None

    async def transfer(self, target: str) -> None:
        if self.transfer_handler is None:
            raise ControlUnavailable("this call cannot be transferred: it is not on a phone line")
        await self.transfer_handler(target)

    async def send_dtmf(self, digits: str) -> None:
        if self.dtmf_handler is None:
            raise ControlUnavailable("this call cannot send keypad tones: it is not on a phone line")
        await self.dtmf_handler(digits)
