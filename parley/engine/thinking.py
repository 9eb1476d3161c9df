"""What a reply says and does: the model's rounds, the checks its words get against the agent's facts,
a caller's request matched to its tool, and the tools run between rounds.

``Reply`` (``engine/reply.py``) voices and plays what this decides, clause by clause, as it is decided.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

from parley.engine.answer_types import AnswerKind
from parley.engine.chunker import ClauseChunker, fixed_clauses, sentence_end
from parley.engine.events import EventType, now
from parley.engine.farewells import closes_call, is_farewell
from parley.engine.grounding import (
    OPENING_WORDS,
    UNSURE_LEAD,
    GroundingCheck,
    UnbackedAnswer,
    is_checked_answer,
    is_question,
)
from parley.engine.repeats import EarlierLines, without_line
from parley.engine.tool_requests import (
    CALLER_TURNS,
    asked_in,
    callers_arguments,
    made_up_contact,
    made_up_detail,
    required_arguments,
    unheard_values,
)
from parley.engine.tools import ToolOutcome, ToolScope
from parley.providers.llm.base import ChatMessage, ToolCall, ToolSpec, Usage
from parley.providers.llm.chat_template import opens_with_markup

if TYPE_CHECKING:
    from parley.engine.reply import ReplyDeps

DONE = "Done."
"""Said in place of a confirmation that names a value nobody gave."""


class Voicing(Protocol):
    """The side of a reply that says what is decided (``Reply``)."""

    segments: list[str]
    """The clauses handed over so far."""
    end_after: str | None

    def add_segment(self, text: str) -> None:
        """Say ``text`` (one clause) after the ones before it."""
        ...

    async def wait_until_heard(self) -> None:
        """Return once every clause handed over so far has been played out."""
        ...


class Thinker:
    """The words and actions of one reply to ``user_message``."""

    def __init__(
        self, reply_id: str, deps: ReplyDeps, user_message: ChatMessage | None, voicing: Voicing
    ) -> None:
        self.reply_id = reply_id
        self.deps = deps
        self.user_message = user_message
        self._voicing = voicing
        self.usage = Usage()
        self.messages: list[ChatMessage] = []
        """The model's turns and tool results of this reply, and the agent's own lines."""
        self._dropped: dict[str, list[str]] = {}
        """Per call id, the arguments left out as details of the caller's nobody gave."""
        self._unasked: dict[str, list[str]] = {}
        """Per call id, the required arguments among those: the call is not run, the caller is asked."""
        self._acted = False
        """An action (a side-effect tool) ran and succeeded: what the model says next confirms it …"""
        self._tool_failed = False
        """… unless a tool of this reply failed: then it tells the failure."""
        self._copied: str | None = None
        """The first sentence of the last round, when it was a copy of an earlier line of the agent's."""
        self.hedged = False
        """The facts that replaced an unbacked answer were said after ``UNSURE_LEAD``, which the history
        leaves out: a small model copies a hedge it sees there, and goes on with facts of its own making."""

    async def run(self) -> None:
        """Decide the reply: model rounds until it has said its piece, tools run between them."""
        chunker = ClauseChunker()
        settings, tools = self.deps.settings, self.deps.tools
        executed: set[str] = set()
        offer_tools = True
        held = await self._off_knowledge()
        for round_no in range(settings.max_tool_rounds + 1):
            try:
                text, calls, unbacked = await self._round(round_no, chunker, offer_tools, held)
            except Exception as exc:  # a dead or broken model: say so instead of going silent
                self.deps.emit(
                    EventType.ERROR, where="llm", stage="llm", reply_id=self.reply_id, error=repr(exc)
                )
                chunker.flush()
                if settings.error_message:
                    self._voicing.add_segment(settings.error_message)
                break
            if (held and round_no == 0 and not calls) or unbacked is not None:
                # Asked about what it does not know, the model answered anyway, or said a "yes" or "no"
                # no fact backs, or "I don't know" to what a fact answers: not said (grounding.py). An
                # unbacked answer gets the facts the question is about.
                self.deps.emit(
                    EventType.KNOWLEDGE_MISS,
                    reply_id=self.reply_id,
                    withheld=text,
                    support=None if unbacked is None else unbacked.support,
                )
                instead = unbacked.instead(settings.unknown_answer) if unbacked else settings.unknown_answer
                self.say_line(instead)
                self.hedged = unbacked is not None and unbacked.hedged
                break
            # A small model may ask again for what it was just given: a call it already made in this
            # reply is not run twice; the model answers from the result it has, without tools. Nor is an
            # action it already took earlier in the call, copied from the history ("Goodbye" → the same
            # booking again).
            done = executed | self._actions_taken()
            new = _distinct(c for c in calls if _call_key(c) not in done)
            fresh = self._not_hanging_up_over(new, executed)
            if not fresh:
                if text:
                    self.messages.append(ChatMessage("assistant", text))
                    break
                if offer_tools and len(self.deps.tools) > 0:
                    # Only repeated calls, or nothing usable at all (a small model may write tool
                    # definitions instead of a call): ask again, without tools, for words.
                    offer_tools = False
                    continue
                break
            executed.update(_call_key(c) for c in fresh)
            fresh = self._without_made_up_details(fresh)
            self.messages.append(ChatMessage("assistant", text, tool_calls=tuple(fresh)))
            self.messages.extend(await self._call_tools(fresh))
            if self._unasked and not self._voicing.segments:
                # A detail the call needs was made up: the caller is asked for it (the 0.5B model, told
                # so by the call's result, writes the call again instead of the question).
                if settings.detail_question:
                    asked = next(iter(self._unasked.values()))
                    self.say_line(settings.detail_question.replace("{detail}", _details(asked)))
                    break
                offer_tools = False
            hung_up = self._voicing.end_after is not None and all(tools.closes_call(c.name) for c in fresh)
            if hung_up and settings.goodbye_message is not None:
                # By the closing tool alone (a tool whose result ends the call, "order 7 cancelled",
                # still has the model tell it). A goodbye the model said with the call stands.
                if not self._voicing.segments:
                    self.say_line(settings.goodbye_message)
                break
        if not executed and self._voicing.end_after is None and self._said_goodbye_back():
            await self._hang_up()
        if not executed and not self._voicing.segments and settings.error_message:
            # Neither words nor a call that ran: the model wrote only markup (a tool call cut off by the
            # token limit, the example's tool asked for by name) or nothing at all. The caller hears the
            # error message, which asks them to say it again, not silence.
            self.deps.emit(
                EventType.ERROR,
                where="llm",
                stage="llm",
                reply_id=self.reply_id,
                error="the model gave neither words nor a usable tool call",
            )
            self.say_line(settings.error_message)

    def _grounding(self) -> tuple[GroundingCheck, str] | None:
        """The check and the user's words, when this reply's words are checked at all."""
        check, said = self.deps.grounding, self.user_message
        if check is None or said is None or not self.deps.settings.unknown_answer:
            return None
        return check, said.content

    async def _round(
        self, round_no: int, chunker: ClauseChunker, offer_tools: bool, held: bool
    ) -> tuple[str, list[ToolCall], UnbackedAnswer | None]:
        """One LLM round. On the first, a caller's request is matched to its tool (``_requested_call``):
        a statement's before the model answers, a question's once the model's answer is not to be said
        ("Yes, I can have a mechanic call you", and no call) and no fact would be said instead."""
        first = round_no == 0
        stated = self._stated()
        tool = await self._nearest_tool() if first else None
        if stated and tool is not None and (requested := await self._requested_call(chunker, tool)):
            return "", requested, None
        vet = not held and first
        near_tool = vet and not stated and tool is not None  # a statement's call was asked for above
        # Near a tool, a fact in place of the model's words would cost the call; a price asked is
        # answered by the price, though ("How much to get into my house, I'm locked out?").
        answered = vet and (self._asks_price() if near_tool else await self._answered())
        text, calls, unbacked, withheld = await self._llm_round(
            round_no,
            chunker,
            offer_tools,
            held and first,
            vet=vet,
            near_tool=near_tool,
            answered=answered,
        )
        if unbacked is not None and unbacked.repeated and self._copied is not None:
            # Asked once more without the exchanges it copied, the model answers this question (or
            # makes the call it asks for); a second copy gets the facts instead.
            text, calls, unbacked, withheld = await self._llm_round(
                round_no,
                chunker,
                offer_tools,
                vet=vet,
                near_tool=near_tool,
                answered=answered,
                forgetting=self._copied,
            )
        unsaid = (
            (held and first and not calls)
            or (unbacked is not None and (unbacked.repeated or not unbacked.related))
            or (withheld and not calls)
        )
        if unsaid and tool is not None and (requested := await self._requested_call(chunker, tool)):
            return "", requested, None
        if withheld:  # no call came of it: the model's words are said after all
            for piece in [*chunker.push(text), *chunker.flush()]:
                self._voicing.add_segment(piece)
        return text, calls, unbacked

    async def _nearest_tool(self) -> ToolSpec | None:
        """The tool whose description the caller's words are close to ("Could someone come out to
        give me an estimate?"), if any: they may ask for it."""
        requests, said = self.deps.requests, self.user_message
        return None if requests is None or said is None else await requests.nearest(said.content)

    def _stated(self) -> bool:
        """The caller's words are a statement (a request may be one), not a question."""
        said = self.user_message
        return said is not None and not is_question(said.content)

    async def _requested_call(self, chunker: ClauseChunker, spec: ToolSpec) -> list[ToolCall]:
        """For a message near what ``spec`` does: its call, asked of the model, when its required
        arguments are all the caller's own words (and with only such arguments); else nothing
        (``engine/tool_requests.py``)."""
        said = self.user_message
        if said is None:
            return []
        # A statement near the tool is most likely the request itself ("Please book Biscuit in for
        # Thursday."): its call must come back with arguments to check, not a bare "3" in their place.
        # A question's may come back empty, which is quick, and is the common case.
        _, calls, _, _ = await self._llm_round(
            0, chunker, hold_words=True, tool_choice=spec.name, strict=self._stated()
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
        if not self._stated() or requests is None:
            return []
        earlier = [m.content for m in self.deps.context.messages if m.role == "user"][-CALLER_TURNS:]
        kept: list[str] = []
        for text in earlier:
            if not is_question(text) or ((asked := await requests.nearest(text)) and asked.name == spec.name):
                kept.append(text)
        return kept

    async def _answered(self) -> bool:
        grounding = self._grounding()
        return grounding is not None and await grounding[0].answers(grounding[1])

    def _asks_price(self) -> bool:
        """The caller asks what something costs, and the facts name prices."""
        grounding = self._grounding()
        return grounding is not None and grounding[0].asks_known(grounding[1], AnswerKind.PRICE)

    async def _off_knowledge(self) -> bool:
        grounding = self._grounding()
        return grounding is not None and await grounding[0].off_knowledge(grounding[1])

    async def _llm_round(
        self,
        round_no: int,
        chunker: ClauseChunker,
        offer_tools: bool = True,
        hold_words: bool = False,
        *,
        vet: bool = False,
        near_tool: bool = False,
        answered: bool = False,
        tool_choice: str | None = None,
        strict: bool = False,
        forgetting: str | None = None,
    ) -> tuple[str, list[ToolCall], UnbackedAnswer | None, bool]:
        """One LLM call: stream text into speakable clauses and collect tool calls. With ``hold_words``
        the round ends at the first word, unsaid: only a tool call would go ahead. With ``vet`` (and a
        grounded agent asked a question) an opening "yes" or "no" is held until its sentence is checked
        against the facts; an unbacked one ends the round unsaid, and is returned. With ``near_tool`` too, any
        answer's first sentence is checked: when no fact backs it ("I don't know that.", to "Can a
        mechanic call me?"), the whole answer is withheld (the last value returned is True) for the
        caller to hear only if the request does not become its tool's call. With ``answered`` (a fact
        answers the question), any first sentence is checked like a "yes": one no fact backs ("We close
        on Saturdays.", when the fact says 6 pm) is returned as unbacked, and the facts are said. A first
        sentence copied from what the agent said to another question (``engine/repeats.py``) is returned
        as unbacked too, and kept in ``_copied``; with ``forgetting`` (that copy), the exchanges that
        said it are left out of the request."""
        deps, settings = self.deps, self.deps.settings
        grounding = self._grounding() if vet else None
        vetting = grounding is not None
        # What follows an action's result is what it did: its first sentence is checked for values
        # nobody gave before it is said (``_confirmed``). After a failure the model tells that instead,
        # and after a lookup its answer ("It shipped on March 3") is not a confirmation.
        confirming = self._acted and not self._tool_failed and not hold_words
        unbacked: UnbackedAnswer | None = None
        withheld = False
        unsaid = ""
        copies = self._earlier_lines() if vetting else None
        if copies is not None and forgetting is not None:
            copies = copies.again(forgetting)
        pending: list[ChatMessage] = [self.user_message] if self.user_message else []
        request = deps.context.for_request([*pending, *self.messages])
        if forgetting is not None:
            request = without_line(request, forgetting)
        self._copied = None
        offered = deps.tools.specs() if offer_tools and round_no < settings.max_tool_rounds else []
        if any(m.tool_calls for m in self.messages):
            # After an action the caller must hear what it did: a hang-up now would be dropped anyway
            # (``_not_hanging_up_over``), and offered, it is what a small model picks.
            offered = [spec for spec in offered if not deps.tools.closes_call(spec.name)]
        deps.emit(
            EventType.LLM_REQUEST,
            reply_id=self.reply_id,
            round=round_no,
            messages=len(request),
            tool_choice=tool_choice,
        )
        started = now()
        text = ""
        calls: list[ToolCall] = []
        # Only when set: older models still work.
        forced: dict[str, Any] = {"tool_choice": tool_choice, "strict": strict} if tool_choice else {}
        stream = deps.llm.stream(
            request,
            offered or None,
            max_tokens=settings.max_tokens,
            temperature=settings.temperature,
            **forced,
        )
        try:
            async for chunk in stream:
                if not text and not calls and (chunk.text or chunk.tool_call):
                    deps.emit(
                        EventType.LLM_FIRST_TOKEN,
                        reply_id=self.reply_id,
                        round=round_no,
                        latency_ms=round((now() - started) * 1000, 1),
                    )
                if chunk.text and hold_words:
                    text += chunk.text
                    break
                if chunk.text:
                    text += chunk.text
                    if opens_with_markup(text):
                        continue  # JSON or markup (a call written where none was offered): not speech
                    unsaid += chunk.text
                    if withheld:
                        continue
                    if confirming:
                        sentence = _first_sentence(text, whole=True)
                        if sentence is None:
                            continue
                        confirming = False
                        at = unsaid.find(sentence)
                        if sentence and at >= 0:
                            unsaid = self._confirmed(sentence) + unsaid[at + len(sentence) :]
                    if copies is not None and grounding is not None:
                        copied = copies.verdict(text)
                        if copied is None:
                            continue
                        copies = None
                        if copied:
                            vetting = False
                            unbacked = await grounding[0].in_place_of(grounding[1], copied)
                            self._copied = None if forgetting is not None else copied
                            break
                    if vetting:
                        decided = _first_sentence(text, whole=near_tool or answered)
                        if decided is None:
                            continue
                        vetting = False
                        if decided and grounding is not None:
                            unbacked = await grounding[0].unbacked_answer(
                                grounding[1], decided, any_answer=answered
                            )
                            if unbacked is not None:
                                break
                            if near_tool and not await grounding[0].backs(grounding[1], decided):
                                withheld = True
                                continue
                    for piece in chunker.push(unsaid):
                        self._voicing.add_segment(piece)
                    unsaid = ""
                if chunk.tool_call:
                    calls.append(chunk.tool_call)
                    vetting = False  # an action, not a claim
                if chunk.usage:
                    self.usage = Usage(
                        self.usage.input_tokens + chunk.usage.input_tokens,
                        self.usage.output_tokens + chunk.usage.output_tokens,
                    )
        finally:
            close = getattr(stream, "aclose", None)  # an async generator: stop the model now, not at GC
            if close is not None:
                await close()
        if opens_with_markup(text):
            text = ""
        if confirming and unsaid.strip():
            unsaid = self._confirmed(unsaid.strip())
        if (
            copies is not None
            and text
            and grounding is not None
            and (copied := copies.verdict(text, finished=True))
        ):
            unbacked = await grounding[0].in_place_of(grounding[1], copied)
            self._copied = None if forgetting is not None else copied
        elif vetting and text and grounding is not None:
            unbacked = await grounding[0].unbacked_answer(grounding[1], text.strip(), any_answer=answered)
            withheld = (
                unbacked is None and near_tool and not await grounding[0].backs(grounding[1], text.strip())
            )
        if unbacked is None and not withheld:
            for piece in [*chunker.push(unsaid), *chunker.flush()]:
                self._voicing.add_segment(piece)
        deps.emit(
            EventType.LLM_COMPLETED,
            reply_id=self.reply_id,
            round=round_no,
            text=text.strip(),
            tool_calls=[c.name for c in calls],
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
        )
        return text.strip(), calls, unbacked, withheld

    def _said_goodbye_back(self) -> bool:
        """The caller closed the call and the agent's whole reply is a farewell (``engine/farewells.py``)."""
        said = self.user_message
        return (
            said is not None and closes_call(said.content) and is_farewell(" ".join(self._voicing.segments))
        )

    async def _hang_up(self) -> None:
        """Call the agent's closing tool, if it has one, as the model should have with its goodbye."""
        tools = self.deps.tools
        name = next((spec.name for spec in tools.specs() if tools.closes_call(spec.name)), None)
        if name is None:
            return
        call = ToolCall(f"goodbye_{self.reply_id}", name, {}, "{}")
        self.messages.append(ChatMessage("assistant", "", tool_calls=(call,)))
        self.messages.extend(await self._call_tools([call]))

    def _earlier_lines(self) -> EarlierLines | None:
        """What the agent said earlier to other questions, when this reply is to a question."""
        said, settings = self.user_message, self.deps.settings
        if said is None or not is_question(said.content):
            return None
        own = [settings.unknown_answer, settings.error_message, settings.goodbye_message or ""]
        return EarlierLines.of(self.deps.context.messages, said.content, own)

    def _actions_taken(self) -> set[str]:
        """Calls of side-effect tools made in earlier replies of this call."""
        tools = self.deps.tools
        return {
            _call_key(call)
            for message in self.deps.context.messages
            for call in message.tool_calls
            if (tool := tools.get(call.name)) is not None and tool.side_effect
        }

    def _not_hanging_up_over(self, calls: list[ToolCall], executed: set[str]) -> list[ToolCall]:
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

    def _given(self, *, calls: bool = True) -> list[str]:
        """What the agent was told: its prompt and facts, the caller's words, tool results and (with
        ``calls``) the arguments of the calls made, which the model wrote itself."""
        context = self.deps.context
        given = [context.system_prompt, *context.knowledge]
        for message in [*context.messages, *self.messages]:
            if message.role in ("user", "tool"):
                given.append(message.content)
            if calls:
                given.extend(json.dumps(call.arguments) for call in message.tool_calls)
        if self.user_message is not None:
            given.append(self.user_message.content)
        return given

    def _confirmed(self, sentence: str) -> str:
        """``sentence`` (what the model says an action did), or the plain ``DONE`` when it names a day,
        month or number nobody gave (``unheard_values``): a caller told the wrong day turns up on it."""
        invented = unheard_values(sentence, self._given())
        if not invented:
            return sentence
        self.deps.emit(EventType.KNOWLEDGE_MISS, reply_id=self.reply_id, withheld=sentence, invented=invented)
        return DONE

    def _without_made_up_details(self, calls: list[ToolCall]) -> list[ToolCall]:
        """The calls without the arguments that are a detail of the caller's nobody gave
        (``made_up_detail``): the 0.5B model fills a form's phone with "123-456-7890", its name with
        "John Doe" and its day with the example call's "Friday". A required name or day left out makes
        the call fail, and the model asks the caller for it; a required contact is left to the tool."""
        known = self._given(calls=False)
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
                    self._unasked[call.id] = missing
                arguments = {k: v for k, v in call.arguments.items() if k not in dropped}
                call = dataclasses.replace(call, arguments=arguments, raw_arguments=json.dumps(arguments))
            kept.append(call)
        return kept

    async def _call_tools(self, calls: list[ToolCall]) -> list[ChatMessage]:
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

    def say_line(self, text: str) -> None:
        """Say a line of the agent's own (not the model's words), kept in the history as said."""
        self._say_fixed(text)
        self.messages.append(ChatMessage("assistant", text))

    def _say_fixed(self, text: str) -> None:
        """Say ``text`` as written, clause by clause (a tool's ``say()``, a line of the agent's)."""
        for piece in fixed_clauses(text):
            self._voicing.add_segment(piece)

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
        if unasked := self._unasked.get(call.id):
            outcome = ToolOutcome(
                call, False, f"not done: the caller has not told you {_details(unasked)}. Ask them for it."
            )
        else:
            outcome = await self.deps.tools.execute(call, ToolScope(say=self._say_fixed))
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
        self._tool_failed = self._tool_failed or not outcome.ok
        self._acted = self._acted or (outcome.ok and tool is not None and tool.side_effect)
        return ChatMessage("tool", outcome.content, tool_call_id=call.id, name=call.name)

    def context_messages(self, spoken: str) -> list[ChatMessage]:
        """Messages for the history: tool exchanges as they happened, then exactly what was said."""
        exchanges = [
            ChatMessage(m.role, "", m.tool_calls, m.tool_call_id, m.name) if m.role == "assistant" else m
            for m in self.messages
            if m.tool_calls or m.role == "tool"
        ]
        complete = [
            m
            for m in exchanges
            if m.role == "tool"
            or any(r.role == "tool" and r.tool_call_id in {c.id for c in m.tool_calls} for r in exchanges)
        ]
        if self.hedged:
            spoken = _without_lead(spoken, UNSURE_LEAD)
        return [*complete, ChatMessage("assistant", spoken)] if spoken else complete


_CALLERS_OWN = re.compile(
    r"^(?:(?:customer|caller|client|your|full|first|last)_?)?name$|^(?:customer|caller|client)$"
)


def _details(arguments: list[str]) -> str:
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


def _without_lead(spoken: str, lead: str) -> str:
    """``spoken`` without the part of ``lead`` it starts with."""
    if spoken.startswith(lead):
        return spoken[len(lead) :].strip()
    return "" if lead.startswith(spoken) else spoken


MAX_VETTED_WORDS = 12
"""Words of a long first sentence enough to check its claim: the answer's words are held until then, and
waiting for the end of "Parley is an open-source platform for real-time voice AI agents that runs fully
offline." cost its caller the time of four more words (about 150 ms on this CPU)."""


def _first_sentence(text: str, *, whole: bool = False) -> str | None:
    """Enough of a reply to tell whether it opens with "yes", "no" or "I don't know": None while it
    might still; else its first sentence when it does (cut where the sentence ends, or its first
    ``MAX_VETTED_WORDS`` words), or "" when it does not. ``whole``: the first sentence whatever it opens
    with."""
    words = text.split()
    if not words:
        return None
    if not whole and not is_checked_answer(text):
        return "" if len(words) >= OPENING_WORDS or sentence_end(text) else None
    end = sentence_end(text)
    if end:
        return text[: end.end()].strip()
    # The last word may still be growing ("off" of "offline"): only whole words count.
    return " ".join(words[:MAX_VETTED_WORDS]) if len(words) > MAX_VETTED_WORDS else None


def _call_key(call: ToolCall) -> str:
    return call.name + json.dumps(call.arguments, sort_keys=True, default=str)


def _distinct(calls: Iterable[ToolCall]) -> list[ToolCall]:
    """The calls without repeats of one asked for twice in the same model turn."""
    unique: dict[str, ToolCall] = {}
    for call in calls:
        unique.setdefault(_call_key(call), call)
    return list(unique.values())
