"""Which of the model's tool calls a reply runs, and running them between its rounds.

A call made once is not made again, a hang-up waits until the caller has heard what an action did, an
argument that is a detail of the caller's nobody gave is left out, a side-effect tool waits until the
words before it were heard, and a tool that keeps the caller waiting has the agent's filler said.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from parley.engine.events import EventType, now
from parley.engine.tool_requests import asked_in, made_up_contact, made_up_detail, required_arguments
from parley.engine.tools import ToolOutcome, ToolScope
from parley.engine.voicing import Voicing, say_fixed
from parley.providers.llm.base import ChatMessage, ToolCall

if TYPE_CHECKING:
    from parley.engine.reply import ReplyDeps


class ToolRunner:
    """The tool calls of one reply to ``user_message``: which go ahead, and what they did."""

    def __init__(
        self, reply_id: str, deps: ReplyDeps, user_message: ChatMessage | None, voicing: Voicing
    ) -> None:
        self.reply_id = reply_id
        self.deps = deps
        self.user_message = user_message
        self._voicing = voicing
        self._dropped: dict[str, list[str]] = {}
        """Per call id, the arguments left out as details of the caller's nobody gave."""
        self.unasked: dict[str, list[str]] = {}
        """Per call id, the required arguments among those: the call is not run, the caller is asked."""
        self.acted = False
        """An action (a side-effect tool) ran and succeeded: what the model says next confirms it …"""
        self.failed = False
        """… unless a tool of this reply failed: then it tells the failure."""

    def actions_taken(self) -> set[str]:
        """Calls of side-effect tools made in earlier replies of this call."""
        tools = self.deps.tools
        return {
            call_key(call)
            for message in self.deps.context.messages
            for call in message.tool_calls
            if (tool := tools.get(call.name)) is not None and tool.side_effect
        }

    def not_hanging_up_over(self, calls: list[ToolCall], executed: set[str]) -> list[ToolCall]:
        """A hang-up asked for together with another action, or right after one in the same reply, is
        dropped: the caller has not heard what that action did (a small model books and hangs up at once).

        Unless none of those actions takes its arguments from the caller's words in this message: told
        "Alright, goodbye.", a small model also books what an earlier turn asked for and never got. That
        is a leftover from the history, not a request: it is dropped, and the hang-up goes ahead."""
        closing = {c.id for c in calls if self.deps.tools.closes_call(c.name)}
        if not closing or not (executed or len(closing) < len(calls)):
            return calls
        others = [c for c in calls if c.id not in closing]
        said = self.user_message
        if executed or said is None or any(asked_in(c.arguments, said.content) for c in others):
            return others
        return [c for c in calls if c.id in closing]

    def without_made_up_details(self, calls: list[ToolCall], known: list[str]) -> list[ToolCall]:
        """The calls without the arguments that are a detail of the caller's nobody gave
        (``made_up_detail``; ``known`` is what the agent was told): the 0.5B model fills a form's phone
        with "123-456-7890", its name with "John Doe" and its day with the example call's "Friday". A
        required name or day left out makes the call fail, and the model asks the caller for it; a
        required contact is left to the tool."""
        kept: list[ToolCall] = []
        for call in calls:
            tool = self.deps.tools.get(call.name)
            required = required_arguments(tool.spec()) if tool is not None else list(call.arguments)
            dropped = [
                name
                for name, value in call.arguments.items()
                if made_up_detail(name, value, known)
                and not (name in required and made_up_contact(value, known))
            ]
            if dropped:
                self._dropped[call.id] = dropped
                if missing := [name for name in dropped if name in required]:
                    self.unasked[call.id] = missing
                arguments = {k: v for k, v in call.arguments.items() if k not in dropped}
                call = dataclasses.replace(call, arguments=arguments, raw_arguments=json.dumps(arguments))
            kept.append(call)
        return kept

    async def call_tools(self, calls: list[ToolCall]) -> list[ChatMessage]:
        """Run all calls of one model turn at once; results go back in the order they were asked for.
        If a tool keeps the caller waiting, the agent's filler is said (once per reply)."""
        tools = self.deps.tools
        waiting = [c for c in calls if (t := tools.get(c.name)) is not None and t.filler]
        executing = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._call_tool(c, executing if c in waiting else None)) for c in calls
            ]
            filler = None
            if waiting and tools.filler and tools.filler not in self._voicing.segments:
                filler = group.create_task(self._filler(tools.filler, tools.filler_after_s, executing))
            await asyncio.wait(tasks)
            if filler is not None:
                filler.cancel()
        return [task.result() for task in tasks]

    async def _filler(self, text: str, after_s: float, executing: asyncio.Event) -> None:
        await executing.wait()
        await asyncio.sleep(after_s)
        self._voicing.add_segment(text)

    async def _call_tool(self, call: ToolCall, executing: asyncio.Event | None = None) -> ChatMessage:
        tool = self.deps.tools.get(call.name)
        if tool is not None and tool.side_effect:
            await self._voicing.wait_until_heard()
        self.deps.emit(
            EventType.TOOL_CALL,
            reply_id=self.reply_id,
            tool=call.name,
            arguments=call.arguments,
            call_id=call.id,
            dropped=self._dropped.get(call.id, []),
        )
        if executing is not None:
            executing.set()
        started = now()
        if unasked := self.unasked.get(call.id):
            outcome = ToolOutcome(
                call,
                False,
                f"not done: the caller has not told you {details_in_words(unasked)}. Ask them for it.",
            )
        else:
            scope = ToolScope(say=functools.partial(say_fixed, self._voicing))
            outcome = await self.deps.tools.execute(call, scope)
        self.deps.emit(
            EventType.TOOL_RESULT,
            reply_id=self.reply_id,
            tool=call.name,
            call_id=call.id,
            ok=outcome.ok,
            result=outcome.content,
            latency_ms=round((now() - started) * 1000, 1),
        )
        if outcome.end_call:
            self._voicing.end_after = "agent_ended_call"
        self.failed = self.failed or not outcome.ok
        self.acted = self.acted or (outcome.ok and tool is not None and tool.side_effect)
        return ChatMessage("tool", outcome.content, tool_call_id=call.id, name=call.name)


_CALLERS_OWN = re.compile(
    r"^(?:(?:customer|caller|client|your|full|first|last)_?)?name$|^(?:customer|caller|client)$"
)


def details_in_words(arguments: list[str]) -> str:
    """Arguments' names as words for asking the caller ("day" → "the day", "customer_name" → "your
    name", "first_name" → "your first name")."""
    said = []
    for argument in arguments:
        words = re.sub(r"(?<=[a-z])(?=[A-Z])|[_-]+", " ", argument).strip().lower().split()
        if _CALLERS_OWN.match(argument.lower()):
            own = [w for w in words if w not in ("customer", "caller", "client", "your", "name")]
            said.append(" ".join(["your", *own, "name"]))
        else:
            said.append(" ".join(["the", *words]))
    return " and ".join(said)


def call_key(call: ToolCall) -> str:
    """What makes two calls the same call: the tool and its arguments."""
    return call.name + json.dumps(call.arguments, sort_keys=True, default=str)


def distinct_calls(calls: Iterable[ToolCall]) -> list[ToolCall]:
    """The calls without repeats of one asked for twice in the same model turn."""
    unique: dict[str, ToolCall] = {}
    for call in calls:
        unique.setdefault(call_key(call), call)
    return list(unique.values())
