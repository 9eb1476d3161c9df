"""What every Parley client (WebSocket or WebRTC) does with server messages: keep them, and wait for one."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from parley.engine.events import now


class MessageInbox:
    """Server messages received so far; a client appends to ``messages`` and sets ``_new``."""

    messages: list[dict[str, Any]]
    _new: asyncio.Event

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    async def wait_for(
        self, types: str | tuple[str, ...], limit_s: float = 10.0, since: int = 0, **match: Any
    ) -> dict[str, Any]:
        """The first message (from index ``since``) of one of ``types`` whose fields equal ``match``."""
        wanted = (types,) if isinstance(types, str) else types
        deadline = now() + limit_s
        index = since
        while True:
            while index < len(self.messages):
                message = self.messages[index]
                index += 1
                if message.get("type") in wanted and all(message.get(k) == v for k, v in match.items()):
                    return message
            if self.closed:
                raise ConnectionError(f"connection closed while waiting for {wanted}")
            remaining = deadline - now()
            if remaining <= 0:
                seen = [m.get("type") for m in self.messages[since:]]
                raise TimeoutError(f"no {wanted} within {limit_s} s; got {seen}")
            self._new.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._new.wait()

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("type") == type_]
