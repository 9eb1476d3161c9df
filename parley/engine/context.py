"""Conversation history, kept to what the user actually heard and pruned to a token budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from parley.providers.llm.base import ChatMessage


@dataclass(slots=True)
class Turn:
    """A group of messages that must be kept or dropped together (a tool call with its result)."""

    messages: list[ChatMessage] = field(default_factory=list)


class ConversationContext:
    """The chat history of one session.

    Pruning drops whole turns, oldest first, so a tool call is never separated from its result and the
    system prompt and grounding knowledge always stay.
    """

    def __init__(
        self, system_prompt: str, knowledge: list[str], token_budget: int, count_tokens: Callable[[str], int]
    ) -> None:
        self.system_prompt = system_prompt
        self.knowledge = list(knowledge)
        self.token_budget = token_budget
        self._count = count_tokens
        self._turns: list[Turn] = []

    @property
    def messages(self) -> list[ChatMessage]:
        return [m for turn in self._turns for m in turn.messages]

    def system_message(self) -> ChatMessage:
        text = self.system_prompt
        if self.knowledge:
            text += "\n\nFacts you can rely on:\n" + "\n".join(f"- {k}" for k in self.knowledge)
        return ChatMessage("system", text)

    def add_user(self, text: str) -> None:
        self._turns.append(Turn([ChatMessage("user", text)]))

    def add_turn(self, messages: list[ChatMessage]) -> None:
        """Append the messages of one agent reply (assistant text, tool calls and results) as one unit."""
        if messages:
            self._turns.append(Turn(list(messages)))

    def take_back_last_user_turn(self) -> str | None:
        """Remove the last user message and everything after it; return its text (None if none)."""
        for index in range(len(self._turns) - 1, -1, -1):
            first = self._turns[index].messages[0]
            if first.role == "user" and len(self._turns[index].messages) == 1:
                del self._turns[index:]
                return first.content
        return None

    def for_request(self, pending: list[ChatMessage] | None = None) -> list[ChatMessage]:
        """Messages for the next LLM call: system, pruned history, then ``pending`` (never pruned)."""
        pending = pending or []
        system = self.system_message()
        fixed = self._tokens([system, *pending])
        kept: list[Turn] = []
        used = fixed
        for turn in reversed(self._turns):
            cost = self._tokens(turn.messages)
            if used + cost > self.token_budget:
                break
            kept.append(turn)
            used += cost
        dropped = len(self._turns) - len(kept)
        if dropped:
            self._turns = self._turns[dropped:]
        history = [m for turn in reversed(kept) for m in turn.messages]
        return [system, *history, *pending]

    def _tokens(self, messages: list[ChatMessage]) -> int:
        total = 0
        for m in messages:
            total += self._count(m.content) + 4
            for call in m.tool_calls:
                total += self._count(call.name) + self._count(call.raw_arguments or str(call.arguments))
        return total
