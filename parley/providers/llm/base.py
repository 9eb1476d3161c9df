"""The language-model Protocol: OpenAI-style messages in, a stream of text and tool calls out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: str = ""
    """The arguments exactly as the model produced them (kept when they are not valid JSON)."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: Role
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model; ``parameters`` is a JSON schema object."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})


@dataclass(frozen=True, slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class LLMChunk:
    """One streamed piece of a reply: text, a complete tool call, or the closing usage figures."""

    text: str = ""
    tool_call: ToolCall | None = None
    usage: Usage | None = None
    finish_reason: str | None = None


def takes_allowed_tools(model: object) -> bool:
    """Whether ``model.stream`` also takes ``allowed_tools``: the tools a reply may call, a subset of those
    offered, which all stay in the prompt (as OpenAI's ``allowed_tools`` tool choice keeps a cached
    prompt prefix). A model says so with ``takes_allowed_tools = True``; for any other the engine
    offers only the tools that may be called."""
    return getattr(model, "takes_allowed_tools", False) is True


class LanguageModel(Protocol):
    name: str

    def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        tool_choice: str | None = None,
        strict: bool = False,
    ) -> AsyncIterator[LLMChunk]:
        """Stream a reply. Cancelling the consumer stops generation promptly (within one token).

        ``tool_choice`` names an offered tool the reply must call (OpenAI's ``tool_choice`` function).
        ``strict`` (with it): the call's arguments must be an object with the schema's required
        properties, as a hosted model's are; the llama.cpp chat adapter writes them again under the
        schema's grammar when the model first writes something else ("arguments": 3). Without it, a
        call the model has no words for may come back with its arguments left out."""
        ...

    def count_tokens(self, text: str) -> int:
        """Token count used for context pruning; an estimate is fine for remote models."""
        ...

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        """Load and prime the model; with ``messages`` (an agent's system prompt), prime its prompt cache."""
        ...


@runtime_checkable
class ReadsAhead(Protocol):
    """A model with a prompt cache of its own (a local one), which can read the start of its next prompt
    while the caller is still talking, so that the reply then reads only the rest."""

    async def read_ahead(
        self, messages: list[ChatMessage], tools: list[ToolSpec] | None, opening: str = ""
    ) -> None:
        """The next request is ``messages`` and then a user message that starts with ``opening`` (the
        words heard so far): evaluate that much now, at a priority below any request. Best effort: a
        model may skip it (another conversation holds its cache, or there is too much to read)."""
        ...
