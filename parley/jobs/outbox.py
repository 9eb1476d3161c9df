"""The loop and the backoff of an outbox worker (outbound webhooks, lead notifications).

A worker runs rounds: each claims what is due and sends it. It looks again at once while rounds come back
full, when ``wake`` is set (something was just written), or after ``poll_s`` otherwise; a round that fails
(the database away for a moment) is logged and the next one tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any


async def run_rounds(
    step: Callable[[], Awaitable[int]],
    wake: asyncio.Event,
    *,
    poll_s: float,
    batch: int,
    log: Any,
    what: str,
) -> None:
    """Call ``step`` (which returns how many rows it took) until cancelled."""
    while True:
        wake.clear()  # before the round: a wake during it means work the round may not have seen
        try:
            busy = await step()
        except asyncio.CancelledError:
            raise
        except Exception:  # the database went away for a moment: the next round tries again
            log.exception(f"{what} round failed")
            busy = 0
        if busy < batch:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll_s)


def backoff_s(attempt: int, base_s: float, cap_s: float) -> float:
    """The wait after failed attempt ``attempt`` (1, 2, …): ``base · 2^(attempt-1)``, at most ``cap``."""
    return float(min(base_s * 2 ** min(max(attempt - 1, 0), 30), cap_s))
