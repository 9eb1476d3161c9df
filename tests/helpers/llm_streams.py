"""Consuming an LLM stream the way a barge-in does: read a few chunks, then cancel the consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from parley.providers.llm.base import LLMChunk


async def cancel_after(stream: AsyncIterator[LLMChunk], chunks: int, limit_s: float = 30.0) -> list[str]:
    """Consume ``stream`` in a task until ``chunks`` chunks arrived, cancel it, and return their text."""
    seen: list[str] = []
    enough = asyncio.Event()

    async def consume() -> None:
        async for chunk in stream:
            seen.append(chunk.text)
            if len(seen) >= chunks:
                enough.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(enough.wait(), timeout=limit_s)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return seen
