"""A speech-to-speech call's history in the order the caller heard it.

The provider's transcript of a caller turn may arrive after its answer started being generated; written
down at once it would land after words of the answer the caller has not heard yet, or before a reply
that was then cut. So such a turn is held until its answer starts to be heard (or is recorded), and
everything the agent said goes in as heard.
"""

from __future__ import annotations

from parley.engine.context import ConversationContext
from parley.providers.llm.base import ChatMessage, ToolCall

__all__ = ["S2SHistory"]


class S2SHistory:
    def __init__(self, context: ConversationContext) -> None:
        self._context = context
        self._held: list[str] = []

    @property
    def latest_held(self) -> str | None:
        """The caller's latest words waiting for their answer to be heard, if any."""
        return self._held[-1] if self._held else None

    def hold_user(self, text: str) -> None:
        """A caller turn transcribed while its answer is being prepared: it goes in before that answer."""
        self._held.append(text)

    def flush(self) -> None:
        """The held caller turns go in now (their answer starts to be heard, or is recorded)."""
        for text in self._held:
            self._context.add_user(text)
        self._held.clear()

    def add_reply(self, heard: str) -> None:
        """What the caller heard of a reply (nothing: no assistant turn)."""
        self.flush()
        if heard:
            self._context.add_turn([ChatMessage("assistant", heard)])
        self._context.prune()

    def add_tool(self, call: ToolCall, content: str) -> None:
        self.flush()
        self._context.add_turn(
            [
                ChatMessage("assistant", "", tool_calls=(call,)),
                ChatMessage("tool", content, tool_call_id=call.id, name=call.name),
            ]
        )
