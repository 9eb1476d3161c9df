"""What a reply says and does: the model's rounds until it has said its piece, the tools run between
them, and what is said instead when the model's words may not be.

The parts live beside it: one LLM call and the checks its words get against the agent's facts
(``engine/model_rounds.py``), a caller's request matched to its tool (``engine/requested_calls.py``),
the tool calls run (``engine/tool_runner.py``). ``Reply`` (``engine/reply.py``) voices and plays what
this decides, clause by clause, as it is decided (``engine/voicing.py``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.engine.answer_types import AnswerKind
from parley.engine.chunker import ClauseChunker
from parley.engine.events import EventType
from parley.engine.farewells import closes_call, is_farewell
from parley.engine.grounding import UNSURE_LEAD, UnbackedAnswer
from parley.engine.model_rounds import ModelRounds
from parley.engine.requested_calls import RequestedCalls
from parley.engine.tool_runner import ToolRunner, call_key, details_in_words, distinct_calls
from parley.engine.voicing import Voicing, say_fixed
from parley.providers.llm.base import ChatMessage, ToolCall, Usage

if TYPE_CHECKING:
    from parley.engine.reply import ReplyDeps


class Thinker:
    """The words and actions of one reply to ``user_message``."""

    def __init__(
        self, reply_id: str, deps: ReplyDeps, user_message: ChatMessage | None, voicing: Voicing
    ) -> None:
        self.reply_id = reply_id
        self.deps = deps
        self.user_message = user_message
        self._voicing = voicing
        self.messages: list[ChatMessage] = []
        """The model's turns and tool results of this reply, and the agent's own lines."""
        self._tools = ToolRunner(reply_id, deps, user_message, voicing)
        self._rounds = ModelRounds(reply_id, deps, user_message, voicing, self.messages, self._tools)
        self._requested = RequestedCalls(reply_id, deps, user_message, self._rounds)
        self.hedged = False
        """The facts that replaced an unbacked answer were said after ``UNSURE_LEAD``, which the history
        leaves out: a small model copies a hedge it sees there, and goes on with facts of its own making."""

    @property
    def usage(self) -> Usage:
        """The tokens the model's rounds of this reply used."""
        return self._rounds.usage

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
            sole = self._requested.sole_action() if round_no == 0 and not text and not calls else None
            if sole is not None and self._requested.stated():
                # Neither words nor a call it has: a small model copies the example call's tool. A
                # statement to an agent with one action is that action's request, its arguments the
                # caller's own words (or nothing comes of it).
                calls = await self._requested.call_for(chunker, sole)
            # A small model may ask again for what it was just given: a call it already made in this
            # reply is not run twice; the model answers from the result it has, without tools. Nor is an
            # action it already took earlier in the call, copied from the history ("Goodbye" → the same
            # booking again).
            done = executed | self._tools.actions_taken()
            new = distinct_calls(c for c in calls if call_key(c) not in done)
            fresh = self._tools.not_hanging_up_over(new, executed)
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
            executed.update(call_key(c) for c in fresh)
            fresh = self._tools.without_made_up_details(fresh, self._rounds.given(calls=False))
            self.messages.append(ChatMessage("assistant", text, tool_calls=tuple(fresh)))
            self.messages.extend(await self._tools.call_tools(fresh))
            if self._tools.unasked and not self._voicing.segments:
                # A detail the call needs was made up: the caller is asked for it (the 0.5B model, told
                # so by the call's result, writes the call again instead of the question).
                if settings.detail_question:
                    asked = next(iter(self._tools.unasked.values()))
                    self.say_line(settings.detail_question.replace("{detail}", details_in_words(asked)))
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

    async def _round(
        self, round_no: int, chunker: ClauseChunker, offer_tools: bool, held: bool
    ) -> tuple[str, list[ToolCall], UnbackedAnswer | None]:
        """One LLM round. On the first, a caller's request is matched to its tool (``RequestedCalls``):
        a statement's before the model answers, a question's once the model's answer is not to be said
        ("Yes, I can have a mechanic call you", and no call) and no fact would be said instead."""
        first = round_no == 0
        stated = self._requested.stated()
        tool = await self._requested.nearest_tool() if first else None
        if stated and tool is not None and (requested := await self._requested.call_for(chunker, tool)):
            return "", requested, None
        vet = not held and first
        near_tool = vet and not stated and tool is not None  # a statement's call was asked for above
        # Near a tool, a fact in place of the model's words would cost the call; a price asked is
        # answered by the price, though ("How much to get into my house, I'm locked out?").
        answered = vet and (self._asks_price() if near_tool else await self._answered())
        text, calls, unbacked, withheld = await self._rounds.ask(
            round_no,
            chunker,
            offer_tools,
            held and first,
            vet=vet,
            near_tool=near_tool,
            answered=answered,
        )
        if unbacked is not None and unbacked.repeated and self._rounds.copied is not None:
            # Asked once more without the exchanges it copied, the model answers this question (or
            # makes the call it asks for); a second copy gets the facts instead.
            text, calls, unbacked, withheld = await self._rounds.ask(
                round_no,
                chunker,
                offer_tools,
                vet=vet,
                near_tool=near_tool,
                answered=answered,
                forgetting=self._rounds.copied,
            )
        unsaid = (
            (held and first and not calls)
            or (unbacked is not None and (unbacked.repeated or not unbacked.related))
            or (withheld and not calls)
        )
        if unsaid and tool is not None and (requested := await self._requested.call_for(chunker, tool)):
            return "", requested, None
        if withheld:  # no call came of it: the model's words are said after all
            for piece in [*chunker.push(text), *chunker.flush()]:
                self._voicing.add_segment(piece)
        return text, calls, unbacked

    async def _answered(self) -> bool:
        grounding = self._rounds.grounding()
        return grounding is not None and await grounding[0].answers(grounding[1])

    def _asks_price(self) -> bool:
        """The caller asks what something costs, and the facts name prices."""
        grounding = self._rounds.grounding()
        return grounding is not None and grounding[0].asks_known(grounding[1], AnswerKind.PRICE)

    async def _off_knowledge(self) -> bool:
        grounding = self._rounds.grounding()
        return grounding is not None and await grounding[0].off_knowledge(grounding[1])

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
        self.messages.extend(await self._tools.call_tools([call]))

    def say_line(self, text: str) -> None:
        """Say a line of the agent's own (not the model's words), kept in the history as said."""
        say_fixed(self._voicing, text)
        self.messages.append(ChatMessage("assistant", text))

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


def _without_lead(spoken: str, lead: str) -> str:
    """``spoken`` without the part of ``lead`` it starts with."""
    if spoken.startswith(lead):
        return spoken[len(lead) :].strip()
    return "" if lead.startswith(spoken) else spoken
