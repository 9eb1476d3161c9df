"""Conversation history, kept to what the user actually heard and fitted to a token budget.

``for_request`` is pure: it is also called for speculative replies that are thrown away, so it only
*chooses* what to send. ``prune`` forgets for good, and the session calls it when a turn is committed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from parley.engine.knowledge import KnowledgeIndex, Passage
from parley.providers.llm.base import ChatMessage, ToolCall

PRUNE_TO = 0.6
"""Share of the token budget the history is cut back to once it no longer fits."""
RETRIEVAL_SHARE = 4
"""Without an explicit budget, retrieved passages may use a quarter of the context budget…"""
RETRIEVAL_MAX_TOKENS = 400
"""…but no more than this: a small model answers best from a few relevant lines."""
GROUNDING_RULES = (
    "\n\n# How to answer\n"
    '- Answer questions from "What you know" only. Never guess or make anything up.\n'
    '- If "What you know" does not answer a question, say you don\'t know and offer to take a message.\n'
    "- Speak in one or two short sentences, as on the phone.\n"
    "- When the caller asks for something one of your tools does, call that tool."
)
"""How a grounded agent (one with knowledge) answers: said once, after its facts, in every prompt."""
EXAMPLE_FACTS = (
    "The shop is open Tuesday to Sunday, 7 am to 2 pm.",
    "The shop is closed on Mondays.",
)
"""Facts of a business with no name: a named one (it was "Pine Street Bakery") lent its name to the
answers of a real bakery closed on Mondays ("Yes, Pine Street Bakery is open on Monday.")."""


EXAMPLE_ACTION = "book_pickup"
"""The example call's action. It is not offered to the model (a call of it is dropped); it shows what
follows a tool's result: what was done, in words, and no hang-up."""


def grounding_examples(closing_tool: str | None = None, actions: Collection[str] = ()) -> list[ChatMessage]:
    """A short example call with another business, before the real one: the moves a small model gets
    wrong when only told them — the "no" its facts imply, admitting what they do not say, (for an agent
    with ``actions``, its tools that do something) telling the caller what a tool call did, and
    (with ``closing_tool``, the tool that ends a call) hanging up on goodbye.

    Without the action, the 0.5B default model copies the example's only tool result, the hang-up, and
    follows a booking with "Thank you for your help! I'm glad I could help." or a second call of it."""
    said = [
        ChatMessage("system", "An example call of another business, which knows: " + " ".join(EXAMPLE_FACTS)),
        ChatMessage("user", "Are you open on Monday?"),
        ChatMessage("assistant", "No, sorry, we're closed on Mondays."),
        ChatMessage("user", "Do you deliver?"),
        ChatMessage("assistant", "I'm sorry, I don't know that. Can I take a message for the team?"),
    ]
    if actions:
        arguments = {"day": "Friday"}
        name = EXAMPLE_ACTION if EXAMPLE_ACTION not in actions else f"example_{EXAMPLE_ACTION}"
        booking = ToolCall("example_0", name, arguments, json.dumps(arguments))
        said += [
            ChatMessage("user", "Can you book me a pickup for Friday?"),
            ChatMessage("assistant", "", tool_calls=(booking,)),
            ChatMessage("tool", '{"ok": true}', tool_call_id=booking.id, name=name),
            ChatMessage(
                "assistant", "Done: you're booked for Friday. Is there anything else I can help with?"
            ),
        ]
    if closing_tool:
        call = ToolCall("example_1", closing_tool, {}, "{}")
        said += [
            ChatMessage("user", "No thanks, that's all. Bye!"),
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", '{"ok": true}', tool_call_id=call.id, name=closing_tool),
            ChatMessage("assistant", "Goodbye, have a nice day!"),
        ]
    return [*said, ChatMessage("system", "The example is over. The real call starts now.")]


RETRIEVAL_HEADER = (
    "Reference notes for the caller's last question, from the business's documents. Answer from them "
    "when they help; if they do not answer the question, say you don't know."
)


@dataclass(slots=True)
class Turn:
    """A group of messages that must be kept or dropped together (a tool call with its result)."""

    messages: list[ChatMessage] = field(default_factory=list)


class ConversationContext:
    """The chat history of one session.

    A request is laid out as: the system prompt (with the agent's ``knowledge`` facts), the history that
    fits, and the pending messages; passages retrieved from the agent's documents for the user's last
    words go in a system message right before that user message. Small models attend most to nearby
    text, and everything before it stays byte-identical from turn to turn, so the model's prompt cache
    keeps working. Budgeting drops whole turns, oldest first, so a tool call is never separated from
    its result and the system prompt always stays.
    """

    def __init__(
        self,
        system_prompt: str,
        knowledge: list[str],
        token_budget: int,
        count_tokens: Callable[[str], int],
        *,
        documents: KnowledgeIndex | None = None,
        retrieval_budget: int | None = None,
        grounded: bool = False,
        examples: list[ChatMessage] | None = None,
        language_note: str = "",
    ) -> None:
        self.system_prompt = system_prompt
        self.language_note = language_note
        """Said last in the system message, where a small model heeds it most: the language to answer in
        (set when the session learns the caller's language)."""
        self.knowledge = list(knowledge)
        self.token_budget = token_budget
        self.documents = documents if documents is not None and len(documents) else None
        self.retrieval_budget = (
            retrieval_budget
            if retrieval_budget is not None
            else min(RETRIEVAL_MAX_TOKENS, token_budget // RETRIEVAL_SHARE)
        )
        self._count = count_tokens
        self._turns: list[Turn] = []
        self._retrieval: tuple[str, list[Passage]] | None = None
        """The last query searched for and its passages: a reply's rounds and its checks all ask for the
        passages of the same caller message."""
        self.grounded = grounded and bool(self.knowledge or self.documents)
        self.examples = list(examples or []) if self.grounded else []

    @property
    def messages(self) -> list[ChatMessage]:
        return [m for turn in self._turns for m in turn.messages]

    def system_message(self) -> ChatMessage:
        text = self.system_prompt
        facts = "\n".join(f"- {k}" for k in self.knowledge)
        if self.grounded:
            text += (f"\n\n# What you know\n{facts}" if facts else "") + GROUNDING_RULES
        elif facts:
            text += "\n\nFacts you can rely on:\n" + facts
        if self.language_note:
            text += "\n\n" + self.language_note
        return ChatMessage("system", text)

    def add_user(self, text: str) -> None:
        self._turns.append(Turn([ChatMessage("user", text)]))

    def add_turn(self, messages: list[ChatMessage]) -> None:
        """Append the messages of one agent reply (assistant text, tool calls and results) as one unit."""
        if messages:
            self._turns.append(Turn(list(messages)))

    def add_note(self, text: str) -> None:
        """Something the agent must know that neither it nor the caller said (a supervisor's words)."""
        self._turns.append(Turn([ChatMessage("system", text)]))

    def take_back_last_user_turn(self) -> str | None:
        """Remove the last user message and everything after it; return its text (None if none)."""
        for index in range(len(self._turns) - 1, -1, -1):
            first = self._turns[index].messages[0]
            if first.role == "user" and len(self._turns[index].messages) == 1:
                del self._turns[index:]
                return first.content
        return None

    def retrieve(self, query: str) -> list[Passage]:
        """The document passages for ``query`` within the retrieval budget (none without documents)."""
        if self.documents is None or not query.strip():
            return []
        if self._retrieval is None or self._retrieval[0] != query:
            self._retrieval = (query, self.documents.search(query, self.retrieval_budget, self._count))
        return list(self._retrieval[1])

    def retrieval_message(self, query: str) -> ChatMessage | None:
        passages = self.retrieve(query)
        if not passages:
            return None
        notes = "\n".join(f"- {p.text}" for p in passages)
        return ChatMessage("system", f"{RETRIEVAL_HEADER}\n{notes}")

    def ahead(self) -> list[ChatMessage]:
        """What the next request starts with, before the caller's words: the system messages and the
        history that fits (the passages a question retrieves are not known until it is asked)."""
        head = [self.system_message(), *self.examples]
        history = self._fitting(self._tokens(head), self._turns)
        return [*head, *(m for turn in history for m in turn.messages)]

    def for_request(self, pending: list[ChatMessage] | None = None) -> list[ChatMessage]:
        """Messages for the next LLM call: system, the history that fits, then ``pending`` (never cut).

        Pure: calling it any number of times (speculative replies, tool rounds) changes nothing."""
        pending = list(pending or [])
        head = [self.system_message(), *self.examples]
        history = self._fitting(self._tokens([*head, *pending]), self._turns)
        messages = [*head, *(m for turn in history for m in turn.messages), *pending]
        last_user = next(
            (i for i in range(len(messages) - 1, len(head) - 1, -1) if messages[i].role == "user"), None
        )
        if last_user is None:
            return messages
        notes = self.retrieval_message(messages[last_user].content)
        if notes is None:
            return messages
        # The notes take their room from the oldest history, never from the pending messages.
        history = self._fitting(self._tokens([*head, notes, *pending]), history)
        messages = [*head, *(m for turn in history for m in turn.messages), *pending]
        last_user = max(i for i, m in enumerate(messages) if m.role == "user")
        return [*messages[:last_user], notes, *messages[last_user:]]

    def prune(self) -> int:
        """Forget the turns no request can include any more; return how many were dropped.

        Call it when a turn is committed. What is kept is at least what ``for_request`` would send with
        nothing pending, and the newest turn always stays (a resumed turn may still be taken back)."""
        fixed = self._tokens([self.system_message(), *self.examples])
        if len(self._fitting(fixed, self._turns)) == len(self._turns):
            return 0
        # Over budget: forget down to a part of it at once. Dropping one old turn per new turn would
        # move the start of the history every turn, and the model would evaluate all of it again each
        # time (its prompt cache only reuses an unchanged beginning).
        kept = self._fitting(fixed + int(self.token_budget * (1 - PRUNE_TO)), self._turns)
        dropped = len(self._turns) - max(len(kept), 1 if self._turns else 0)
        if dropped > 0:
            del self._turns[:dropped]
        return max(dropped, 0)

    def _fitting(self, fixed: int, turns: list[Turn]) -> list[Turn]:
        """The newest of ``turns`` that fit in the budget beside ``fixed`` tokens, oldest first."""
        kept: list[Turn] = []
        used = fixed
        for turn in reversed(turns):
            cost = self._tokens(turn.messages)
            if used + cost > self.token_budget:
                break
            kept.append(turn)
            used += cost
        kept.reverse()
        return kept

    def _tokens(self, messages: list[ChatMessage]) -> int:
        total = 0
        for m in messages:
            total += self._count(m.content) + 4
            for call in m.tool_calls:
                total += self._count(call.name) + self._count(call.raw_arguments or str(call.arguments))
        return total
