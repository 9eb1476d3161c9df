"""The model's rounds of one reply: each one LLM call, streamed into speakable clauses, its words checked
against the agent's facts before they are said.

An opening "yes", "no" or "I don't know" is held until its sentence is checked (``engine/grounding.py``);
a first sentence copied from the agent's answer to another question is not said (``engine/repeats.py``);
what follows an action's result names no day or number nobody gave. ``Thinker`` (``engine/thinking.py``)
decides which rounds to ask for.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from parley.engine.chunker import ClauseChunker, sentence_end
from parley.engine.events import EventType, now
from parley.engine.grounding import (
    OPENING_WORDS,
    GroundingCheck,
    UnbackedAnswer,
    is_checked_answer,
    is_question,
)
from parley.engine.repeats import EarlierLines, echo_verdict, without_line
from parley.engine.tool_requests import unheard_values
from parley.engine.tool_runner import ToolRunner
from parley.engine.voicing import Voicing
from parley.providers.llm.base import ChatMessage, ToolCall, Usage, takes_allowed_tools
from parley.providers.llm.chat_template import opens_with_markup

if TYPE_CHECKING:
    from parley.engine.reply import ReplyDeps

DONE = "Done."
"""Said in place of a confirmation that names a value nobody gave."""

MAX_VETTED_WORDS = 12
"""Words of a long first sentence enough to check its claim: the answer's words are held until then, and
waiting for the end of "Parley is an open-source platform for real-time voice AI agents that runs fully
offline." cost its caller the time of four more words (about 150 ms on this CPU)."""


class ModelRounds:
    """The LLM calls of one reply to ``user_message``, and the tokens they used."""

    def __init__(
        self,
        reply_id: str,
        deps: ReplyDeps,
        user_message: ChatMessage | None,
        voicing: Voicing,
        messages: list[ChatMessage],
        tools: ToolRunner,
    ) -> None:
        self.reply_id = reply_id
        self.deps = deps
        self.user_message = user_message
        self._voicing = voicing
        self._messages = messages
        """The reply's own turns so far (``Thinker.messages``), sent after the history."""
        self._tools = tools
        self.usage = Usage()
        self.copied: str | None = None
        """The first sentence of the last round, when it was a copy of an earlier line of the agent's."""

    def grounding(self) -> tuple[GroundingCheck, str] | None:
        """The check and the user's words, when this reply's words are checked at all."""
        check, said = self.deps.grounding, self.user_message
        if check is None or said is None or not self.deps.settings.unknown_answer:
            return None
        return check, said.content

    def given(self, *, calls: bool = True, prompt: bool = True) -> list[str]:
        """What the agent was told: its prompt (with ``prompt``) and facts, the caller's words, tool
        results and (with ``calls``) the arguments of the calls made, which the model wrote itself."""
        context = self.deps.context
        given = [context.system_prompt] if prompt else []
        given.extend(context.knowledge)
        for message in [*context.messages, *self._messages]:
            if message.role in ("user", "tool"):
                given.append(message.content)
            if calls:
                given.extend(json.dumps(call.arguments) for call in message.tool_calls)
        if self.user_message is not None:
            given.append(self.user_message.content)
        return given

    async def ask(
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
        as unbacked too, and kept in ``copied``; with ``forgetting`` (that copy), the exchanges that
        said it are left out of the request. So is one that says the caller's words back (``echo_verdict``),
        which is held only while it follows them."""
        deps, settings = self.deps, self.deps.settings
        grounding = self.grounding() if vet else None
        vetting = grounding is not None
        # What follows an action's result is what it did: its first sentence is checked for values
        # nobody gave before it is said (``_confirmed``). After a failure the model tells that instead,
        # and after a lookup its answer ("It shipped on March 3") is not a confirmation.
        confirming = self._tools.acted and not self._tools.failed and not hold_words
        unbacked: UnbackedAnswer | None = None
        withheld = False
        unsaid = ""
        copies = self._earlier_lines() if vetting else None
        echoing = vetting  # until the reply is not the caller's words said back (``echo_verdict``)
        if copies is not None and forgetting is not None:
            copies = copies.again(forgetting)
        pending: list[ChatMessage] = [self.user_message] if self.user_message else []
        request = deps.context.for_request([*pending, *self._messages])
        if forgetting is not None:
            request = without_line(request, forgetting)
        self.copied = None
        allowed: dict[str, Any] = {}
        specs = deps.tools.specs() if offer_tools else []
        callable_now = {spec.name for spec in specs} if round_no < settings.max_tool_rounds else set()
        if any(m.tool_calls for m in self._messages):
            # After an action the caller must hear what it did: a hang-up now would be dropped anyway
            # (``ToolRunner.not_hanging_up_over``), and allowed, it is what a small model picks.
            callable_now = {name for name in callable_now if not deps.tools.closes_call(name)}
        offered = specs
        if len(callable_now) < len(specs):
            if takes_allowed_tools(deps.llm):  # the same tools in the prompt: its cached prefix holds
                allowed["allowed_tools"] = frozenset(callable_now)
            else:
                offered = [spec for spec in specs if spec.name in callable_now]
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
            **allowed,
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
                    if echoing and grounding is not None:
                        echo = echo_verdict(text, grounding[1])
                        if echo is None:
                            continue
                        echoing = False
                        if echo:
                            vetting, copies = False, None
                            unbacked = await grounding[0].in_place_of(grounding[1], echo)
                            break
                    if copies is not None and grounding is not None:
                        copied = copies.verdict(text)
                        if copied is None:
                            continue
                        copies = None
                        if copied:
                            vetting = False
                            unbacked = await grounding[0].in_place_of(grounding[1], copied)
                            self.copied = None if forgetting is not None else copied
                            break
                    if vetting:
                        decided = _first_sentence(text, whole=near_tool or answered)
                        if decided is None:
                            continue
                        vetting = False
                        if decided and grounding is not None:
                            unbacked = await grounding[0].unbacked_answer(
                                grounding[1],
                                decided,
                                any_answer=answered,
                                given=self.given(calls=False, prompt=False),
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
            echoing
            and text
            and grounding is not None
            and (echo := echo_verdict(text, grounding[1], finished=True))
        ):
            unbacked = await grounding[0].in_place_of(grounding[1], echo)
        elif (
            copies is not None
            and text
            and grounding is not None
            and (copied := copies.verdict(text, finished=True))
        ):
            unbacked = await grounding[0].in_place_of(grounding[1], copied)
            self.copied = None if forgetting is not None else copied
        elif vetting and text and grounding is not None:
            unbacked = await grounding[0].unbacked_answer(
                grounding[1], text.strip(), any_answer=answered, given=self.given(calls=False, prompt=False)
            )
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

    def _earlier_lines(self) -> EarlierLines | None:
        """What the agent said earlier to other questions, when this reply is to a question."""
        said, settings = self.user_message, self.deps.settings
        if said is None or not is_question(said.content):
            return None
        own = [settings.unknown_answer, settings.error_message, settings.goodbye_message or ""]
        return EarlierLines.of(self.deps.context.messages, said.content, own)

    def _confirmed(self, sentence: str) -> str:
        """``sentence`` (what the model says an action did), or the plain ``DONE`` when it names a day,
        month or number nobody gave (``unheard_values``): a caller told the wrong day turns up on it."""
        invented = unheard_values(sentence, self.given())
        if not invented:
            return sentence
        self.deps.emit(EventType.KNOWLEDGE_MISS, reply_id=self.reply_id, withheld=sentence, invented=invented)
        return DONE


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
