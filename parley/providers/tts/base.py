"""The speech-synthesis Protocol."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from parley.audio.frame import PCM16


class SpeechSynthesizer(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str) -> AsyncIterator[PCM16]:
        """Yield mono int16 chunks at ``sample_rate`` as soon as each is ready.

        Cancelling the consumer stops synthesis; the event loop is never blocked by model work.
        """
        ...

    async def warm_up(self) -> None: ...
