"""The transcript convention that lets a small *base* model (no chat template) hold a spoken conversation.

Layout, most stable part first so llama.cpp's prefix KV cache is reused from turn to turn:

1. a fixed header and example exchanges (agent-independent, so ``warm_up`` can evaluate them at start-up);
2. the agent's system messages (instructions and grounding knowledge) and the offered tools, with one
   example of the ``CALL tool_name {json}`` convention; these sit close to the conversation because a
   270M base model attends mostly to nearby text;
3. the history as ``User:`` / ``Assistant:`` / ``Result:`` lines, ending with ``Assistant:``.

The reply side of the same convention (stop strings, tool-call lines, label stripping) lives here too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from parley.providers.llm.base import ChatMessage, ToolCall, ToolSpec

USER, ASSISTANT, RESULT, NOTE = "User:", "Assistant:", "Result:", "Note:"
CALL = "CALL"
STOP_STRINGS = ("\n", USER, ASSISTANT, RESULT)
"""Where a reply ends: a base model would otherwise go on writing the user's next line."""

HEADER = (
    "This is a transcript of a phone call with a helpful, friendly assistant who gives short, "
    "spoken answers.\n\n"
)
EXAMPLES = (
    "User: Hello!\n"
    "Assistant: Hello! What can I do for you?\n"
    "User: How are you today?\n"
    "Assistant: I'm doing well, thanks for asking!\n"
    "User: What's the capital of Italy?\n"
    "Assistant: The capital of Italy is Rome.\n"
    "User: Tell me a joke.\n"
    "Assistant: Sure! Why did the scarecrow win an award? Because he was outstanding in his field!\n\n"
)
CONTEXT_LABEL = "About the assistant in this call:\n"
MAX_RESULT_CHARS = 400
MAX_TOOL_EXAMPLES = 3


def stable_prefix() -> str:
    """The agent-independent opening of every prompt."""
    return HEADER + EXAMPLES


def one_line(text: str) -> str:
    """Newlines inside a turn would read as the end of that turn."""
    return " ".join(text.split())


def tool_line(call: ToolCall) -> str:
    args = call.raw_arguments or json.dumps(call.arguments, separators=(", ", ": "))
    return f"{CALL} {call.name} {one_line(args)}"


def _sample_value(name: str, schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    samples = {"integer": 1, "number": 1, "boolean": True, "array": [], "object": {}}
    return samples.get(str(schema.get("type")), name.replace("_", " "))


def _tools_block(tools: list[ToolSpec]) -> str:
    lines = [
        "The assistant can use these tools. To use one, it answers with a single line: "
        f"{CALL} tool_name {{json arguments}}"
    ]
    for tool in tools:
        props = tool.parameters.get("properties", {})
        args = ", ".join(props) if props else "no arguments"
        lines.append(f"- {tool.name}: {one_line(tool.description)} ({args})")
    lines.append("For example:")
    for tool in tools[:MAX_TOOL_EXAMPLES]:
        props = tool.parameters.get("properties", {})
        sample = {name: _sample_value(name, schema) for name, schema in props.items()}
        request = one_line(tool.description).rstrip(".") or tool.name.replace("_", " ")
        lines += [
            f"{USER} Please {request[:1].lower()}{request[1:]}.",
            f"{ASSISTANT} {CALL} {tool.name} {json.dumps(sample)}",
            f'{RESULT} {{"ok": true}}',
            f"{ASSISTANT} Okay, that's done.",
        ]
    return "\n".join(lines) + "\n\n"


@dataclass(frozen=True, slots=True)
class Prompt:
    """A rendered prompt: the stable ``prefix`` and one line per history entry."""

    prefix: str
    lines: tuple[str, ...]

    def text(self, skip: int = 0) -> str:
        """The full prompt without its ``skip`` oldest history lines (for fitting the context window)."""
        return self.prefix + "".join(line + "\n" for line in self.lines[skip:]) + ASSISTANT


def build_prompt(messages: list[ChatMessage], tools: list[ToolSpec] | None = None) -> Prompt:
    """Render OpenAI-style messages as a few-shot transcript for a base model."""
    leading = 0
    while leading < len(messages) and messages[leading].role == "system":
        leading += 1
    context = "\n".join(m.content.strip() for m in messages[:leading] if m.content.strip())
    prefix = stable_prefix() + (CONTEXT_LABEL + context + "\n\n" if context else "")
    prefix += _tools_block(tools) if tools else ""
    lines: list[str] = []
    for message in messages[leading:]:
        content = one_line(message.content)
        if message.role == "user":
            lines.append(f"{USER} {content}")
        elif message.role == "assistant":
            if content:
                lines.append(f"{ASSISTANT} {content}")
            lines.extend(f"{ASSISTANT} {tool_line(call)}" for call in message.tool_calls)
        elif message.role == "tool":
            lines.append(f"{RESULT} {content[:MAX_RESULT_CHARS]}")
        elif content:
            lines.append(f"{NOTE} {content}")
    return Prompt(prefix, tuple(lines))


def parse_tool_line(line: str, call_id: str, offered: set[str]) -> ToolCall | None:
    """Turn ``CALL name {json}`` into a ToolCall; None when the name is not an offered tool."""
    match = re.match(rf"\s*{CALL}\s+([A-Za-z_][\w.-]*)\s*(.*)", line, re.DOTALL)
    if match is None or match.group(1) not in offered:
        return None
    raw = match.group(2).strip()
    try:
        parsed = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        parsed = None
    arguments = parsed if isinstance(parsed, dict) else {}
    return ToolCall(id=call_id, name=match.group(1), arguments=arguments, raw_arguments=raw)


_LABEL = re.compile(r"^\s*(?:assistant|agent|ai|bot)\s*:\s*", re.IGNORECASE)
_LINK = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_MARKUP = re.compile(r"<[^<>\n]{0,40}>|[*#`~|\\]")


class ReplyCleaner:
    """Streaming clean-up so the voice never reads out speaker labels, tags or markdown symbols.

    Text is held back only while it could still become a label, a tag or a stop string, so the first
    words reach text-to-speech as soon as they are known to be speakable.
    """

    def __init__(self, stops: tuple[str, ...] = STOP_STRINGS) -> None:
        self._stops = stops
        self._pending = ""
        self._started = False

    def feed(self, text: str) -> tuple[str, bool]:
        """Clean text that is safe to speak, and whether a stop string was reached."""
        self._pending += text
        if not self._started:
            # A leading newline or a repeated "Assistant:" label is not the end of the reply.
            self._pending = self._pending.lstrip()
            if _could_be_label(self._pending):
                return "", False
            self._pending = _LABEL.sub("", self._pending).lstrip()
            if not self._pending:
                return "", False
            self._started = True
        self._pending = _strip_markup(self._pending)  # first, so "Us**er:" is caught as a stop
        cut = _find_stop(self._pending, self._stops)
        stopped = cut is not None
        if cut is not None:
            self._pending = self._pending[:cut]
        keep = 0 if stopped else _unsafe_tail(self._pending, self._stops)
        split = len(self._pending) - keep
        ready, self._pending = self._pending[:split], self._pending[split:]
        return ready, stopped

    def flush(self) -> str:
        rest, self._pending = self._pending, ""
        if not self._started:
            rest = _LABEL.sub("", rest).lstrip()
        return _strip_markup(rest)


def _strip_markup(text: str) -> str:
    return _MARKUP.sub("", _LINK.sub(r"\1", text))


def _find_stop(text: str, stops: tuple[str, ...]) -> int | None:
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _could_be_label(text: str) -> bool:
    head = text.lstrip().lower()
    return len(head) < 12 and any(w.startswith(head) for w in ("assistant:", "agent:", "ai:", "bot:"))


def _unsafe_tail(text: str, stops: tuple[str, ...]) -> int:
    """How many trailing characters might still turn into a stop string, a tag or a link."""
    tail = 0
    for stop in stops:
        for n in range(len(stop) - 1, 0, -1):
            if text.endswith(stop[:n]):
                tail = max(tail, n)
                break
    for opener in ("<", "["):
        at = text.rfind(opener)
        if at >= 0 and len(text) - at <= 40 and (">" if opener == "<" else ")") not in text[at:]:
            tail = max(tail, len(text) - at)
    return tail
