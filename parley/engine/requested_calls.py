"""A caller's request matched to its tool's call, when the model answered it with words instead.

The caller's words near what a tool does are asked of the model as that tool's call, and the call goes
ahead only with arguments from the caller's own words (``engine/tool_requests.py`` judges them).
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from parley.engine.chunker import ClauseChunker
from parley.engine.events import EventType
from parley.engine.grounding import is_question
from parley.engine.model_rounds import ModelRounds
from parley.engine.tool_requests import CALLER_TURNS, callers_arguments, required_arguments
from parley.providers.llm.base import ChatMessage, ToolCall, ToolSpec

if TYPE_CHECKING:
    from parley.engine.reply import ReplyDeps


class RequestedCalls:
    """The tool ``user_message`` asks for, if any, and its call made of the caller's words."""

    def __init__(
        self, reply_id: str, deps: ReplyDeps, user_message: ChatMessage | None, rounds: ModelRounds
    ) -> None:
        self.reply_id = reply_id
        self.deps = deps
        self.user_message = user_message
        self._rounds = rounds
        self._asked: set[str] = set()

    async def nearest_tool(self) -> ToolSpec | None:
        """The tool whose description the caller's words are close to ("Could someone come out to
        give me an estimate?"), if any: they may ask for it."""
        requests, said = self.deps.requests, self.user_message
        return None if requests is None or said is None else await requests.nearest(said.content)

    def sole_action(self) -> ToolSpec | None:
        """The agent's only tool that takes required arguments, if it has just one: what a statement
        the model answered with an unusable call was asking for (it wrote the example call's tool,
        which the agent does not have: "Book me for Monday at 7 Birch Road." → ``book_pickup``)."""
        requests = self.deps.requests
        return requests.specs[0] if requests is not None and len(requests.specs) == 1 else None

    def stated(self) -> bool:
        """The caller's words are a statement (a request may be one), not a question."""
        said = self.user_message
        return said is not None and not is_question(said.content)

    async def call_for(self, chunker: ClauseChunker, spec: ToolSpec) -> list[ToolCall]:
        """For a message near what ``spec`` does: its call, asked of the model, when its required
        arguments are all the caller's own words (and with only such arguments); else nothing
        (``engine/tool_requests.py``). Asked once per reply: the same messages would get the same call
        back, a model round later."""
        said = self.user_message
        if said is None or spec.name in self._asked:
            return []
        self._asked.add(spec.name)
        # A statement near the tool is most likely the request itself ("Please book Biscuit in for
        # Thursday."): its call must come back with arguments to check, not a bare "3" in their place.
        # A question's may come back empty, which is quick, and is the common case.
        _, calls, _, _ = await self._rounds.ask(
            0, chunker, hold_words=True, tool_choice=spec.name, strict=self.stated()
        )
        call = next((c for c in calls if c.name == spec.name), None)
        kept = (
            None
            if call is None
            else callers_arguments(
                call.arguments, required_arguments(spec), [*await self._earlier_request(spec), said.content]
            )
        )
        self.deps.emit(
            EventType.TOOL_REQUESTED,
            reply_id=self.reply_id,
            tool=spec.name,
            arguments=None if call is None else call.arguments,
            accepted=kept is not None,
        )
        if call is None or kept is None:
            return []
        return [dataclasses.replace(call, arguments=kept, raw_arguments=json.dumps(kept))]

    async def _earlier_request(self, spec: ToolSpec) -> list[str]:
        """The caller's messages before this one whose words may fill ``spec``'s call.

        A statement's call may take words from the caller's messages before ("My name is Dana." …
        "Tuesday at 3, please."), but not from a question about something else: after "Do you cover
        Denver?", "Please send a tech to 7 Aspen Court" got the address "Denver". A question asking for
        the same tool ("Can you book me for Tuesday?") is part of the request. A question's call takes
        words only from itself: "Do you sell dog food?" after "Can you groom my cat?" and "… on
        Saturday?" must not book the cat for Saturday."""
        requests = self.deps.requests
        if not self.stated() or requests is None:
            return []
        earlier = [m.content for m in self.deps.context.messages if m.role == "user"][-CALLER_TURNS:]
        kept: list[str] = []
        for text in earlier:
            if not is_question(text) or ((asked := await requests.nearest(text)) and asked.name == spec.name):
                kept.append(text)
        return kept
