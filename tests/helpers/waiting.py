"""Waiting in tests for state that has no event of its own (audio heard, a row written)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    """Poll ``condition`` every 10 ms; ``TimeoutError`` when it does not hold within ``within_s``."""
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110  (the state changes without signalling anyone)
            await asyncio.sleep(0.01)
