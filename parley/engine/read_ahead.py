"""Reading the next prompt ahead: while the caller talks, a model with its own prompt cache evaluates the
conversation so far and the words heard, so that once the turn ends the reply reads only the last few.

On this class of CPU a small model reads about 60 tokens a second, and a turn's prompt (the template around
the caller's words, and the words) is 15–20 tokens: a third of a second the caller no longer waits for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from parley.engine.context import ConversationContext
from parley.engine.tools import ToolRegistry
from parley.providers.llm.base import LanguageModel, ReadsAhead

log = structlog.get_logger("parley.engine.read_ahead")

Spawn = Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]


class PromptReader:
    """One read-ahead at a time per session; words heard while one runs are read after it (the latest)."""

    def __init__(
        self,
        llm: LanguageModel,
        context: ConversationContext,
        tools: ToolRegistry,
        spawn: Spawn,
        session_id: str,
    ) -> None:
        self._model = llm if isinstance(llm, ReadsAhead) else None
        self._context = context
        self._tools = tools
        self._spawn = spawn
        self._session_id = session_id
        self._running: asyncio.Task[Any] | None = None
        self._next: str | None = None

    def read(self, heard: str = "") -> None:
        """The caller's next turn starts with ``heard`` (nothing yet: ``""``)."""
        if self._model is None:
            return
        if self._running is not None and not self._running.done():
            self._next = heard
            return
        self._running = self._spawn(self._read(self._model, heard))

    async def _read(self, model: ReadsAhead, heard: str) -> None:
        while True:
            try:
                await model.read_ahead(self._context.ahead(), self._tools.specs() or None, heard)
            except Exception as exc:  # only a head start is lost; the reply reads its prompt anyway
                log.warning("reading the prompt ahead failed", session_id=self._session_id, error=repr(exc))
                return
            if self._next is None:
                return
            heard, self._next = self._next, None
