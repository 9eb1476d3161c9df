"""A deterministic scripted language model, so engine tests run fast and never depend on a real model."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec, Usage

_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class ScriptRule:
    """One scripted behaviour: when ``pattern`` matches, answer with ``reply`` or call ``tool``.

    ``pattern`` is a case-insensitive substring, or a compiled regex searched in the text. A rule with
    ``on_tool_result`` matches the content of a trailing tool-result message instead of the last user
    message. ``reply`` may use ``{result}`` (the matched message, e.g. the tool result) and ``{name}``
    for each named regex group. A tool rule only fires when that tool was offered, as with a real model.
    """

    pattern: str | re.Pattern[str]
    reply: str = ""
    tool: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=dict)
    on_tool_result: bool = False

    @classmethod
    def say(cls, pattern: str | re.Pattern[str], reply: str) -> ScriptRule:
        return cls(pattern, reply=reply)

    @classmethod
    def call(cls, pattern: str | re.Pattern[str], tool: str, arguments: Mapping[str, Any]) -> ScriptRule:
        return cls(pattern, tool=tool, arguments=dict(arguments))

    @classmethod
    def after_tool(cls, pattern: str | re.Pattern[str], reply: str) -> ScriptRule:
        return cls(pattern, reply=reply, on_tool_result=True)

    def search(self, text: str) -> dict[str, str] | None:
        """The named groups of a match (empty for substrings), or None when it does not match."""
        if isinstance(self.pattern, re.Pattern):
            found = self.pattern.search(text)
            return None if found is None else {k: v or "" for k, v in found.groupdict().items()}
        return {} if self.pattern.casefold() in text.casefold() else None


def count_words(text: str) -> int:
    return len(text.split())


class ScriptedModel:
    """Answers from a list of rules, streaming word by word; the first matching rule wins.

    ``calls`` keeps every message list the model was asked about, so tests can check what the
    engine sent (for instance, that a tool result came back with the right ``tool_call_id``).
    """

    def __init__(
        self,
        rules: Sequence[ScriptRule],
        *,
        default_reply: str = "Sorry, I don't know about that.",
        token_delay: float = 0.0,
        name: str = "scripted",
    ) -> None:
        self.rules = list(rules)
        self.default_reply = default_reply
        self.token_delay = token_delay
        self.name = name
        self.calls: list[list[ChatMessage]] = []
        self.tool_choices: list[str | None] = []
        """Per request, the tool whose call it asked for (``tool_choice``)."""
        self.strict: list[bool] = []
        """Per request, whether that call's arguments had to follow the schema (``strict``)."""
        self.tokens_streamed = 0
        self._next_call_id = 0

    async def stream(
        self,
        messages: list[ChatMessage],
        tools: list[ToolSpec] | None = None,
        *,
        max_tokens: int = 128,
        temperature: float = 0.0,
        tool_choice: str | None = None,
        strict: bool = False,
    ) -> AsyncIterator[LLMChunk]:
        self.calls.append(list(messages))
        self.tool_choices.append(tool_choice)
        self.strict.append(strict)
        usage_in = sum(count_words(m.content) for m in messages)
        offered = {t.name for t in tools or ()}
        rule, groups, text = self._pick(messages, offered)
        if tool_choice is not None and tool_choice in offered:
            # Asked for one tool's call: no words, the arguments of the first rule calling it (or none).
            model = next((r for r in self.rules if r.tool == tool_choice and not r.on_tool_result), None)
            rule = ScriptRule(".", tool=tool_choice, arguments=model.arguments if model else {})
        reply = ""
        if rule is None:
            reply = self.default_reply
        elif rule.reply:
            reply = _fill(rule.reply, groups, text)
        words = _WORD.findall(reply)
        finish = "length" if len(words) > max_tokens else "stop"
        words = words[:max_tokens]
        for word in words:
            # Sleeping (even for zero seconds) between words gives cancellation a chance every token.
            await asyncio.sleep(self.token_delay)
            self.tokens_streamed += 1
            yield LLMChunk(text=word)
        if rule is not None and rule.tool is not None:
            # A tool rule may speak first ("Goodbye!") and then call its tool, as real models do.
            await asyncio.sleep(self.token_delay)
            self._next_call_id += 1
            call = ToolCall(
                id=f"call_{self._next_call_id}",
                name=rule.tool,
                arguments=dict(rule.arguments),
                raw_arguments=_json(rule.arguments),
            )
            yield LLMChunk(tool_call=call)
            finish = "tool_calls"
        yield LLMChunk(
            usage=Usage(usage_in, len(words) + (rule is not None and rule.tool is not None)),
            finish_reason=finish,
        )

    def count_tokens(self, text: str) -> int:
        return count_words(text)

    async def warm_up(
        self, messages: list[ChatMessage] | None = None, tools: list[ToolSpec] | None = None
    ) -> None:
        return None

    def _pick(
        self, messages: list[ChatMessage], offered: set[str]
    ) -> tuple[ScriptRule | None, dict[str, str], str]:
        last = next((m for m in reversed(messages) if m.role != "system"), None)
        if last is None:
            return None, {}, ""
        after_tool = last.role == "tool"
        if not after_tool:
            last = next((m for m in reversed(messages) if m.role == "user"), last)
        for rule in self.rules:
            if rule.on_tool_result != after_tool or (rule.tool is not None and rule.tool not in offered):
                continue
            groups = rule.search(last.content)
            if groups is not None:
                return rule, groups, last.content
        return None, {}, last.content


def _fill(template: str, groups: Mapping[str, str], result: str) -> str:
    out = template.replace("{result}", result)
    for key, value in groups.items():
        out = out.replace("{" + key + "}", value)
    return out


def _json(arguments: Mapping[str, Any]) -> str:
    return json.dumps(dict(arguments), separators=(",", ":"))
