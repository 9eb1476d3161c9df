"""Language models: streaming chat with tool calls and token usage."""

from parley.providers.llm.base import ChatMessage, LanguageModel, LLMChunk, ToolCall, ToolSpec, Usage

__all__ = ["ChatMessage", "LLMChunk", "LanguageModel", "ToolCall", "ToolSpec", "Usage"]
