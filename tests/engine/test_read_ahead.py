"""A model with its own prompt cache is given the next prompt while the caller talks: after each reply the
conversation so far, and during the caller's turn the words heard."""

from __future__ import annotations

from parley.engine.session import SessionOptions
from parley.providers.llm.base import ChatMessage, ReadsAhead, ToolSpec
from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.simulate import Conversation, UserTurn
from tests.engine.harness import agent, speech, stack


class ReadingModel(ScriptedModel):
    def __init__(self, rules: list[ScriptRule]) -> None:
        super().__init__(rules)
        self.read: list[tuple[list[tuple[str, str]], list[str], str]] = []

    async def read_ahead(
        self, messages: list[ChatMessage], tools: list[ToolSpec] | None, opening: str = ""
    ) -> None:
        lines = [(m.role, m.content) for m in messages if m.role != "system"]
        self.read.append((lines, [t.name for t in tools or ()], opening))


async def test_the_next_prompt_is_read_after_each_reply_and_with_the_words_heard() -> None:
    model = ReadingModel([ScriptRule.say("France", "Paris."), ScriptRule.say("Japan", "Tokyo.")])
    assert isinstance(model, ReadsAhead)
    engines = stack(
        ["What is the capital of France?", "And what is the capital of Japan?"], [], ms_per_char=20
    )
    engines.llm = model
    conversation = Conversation(agent(), engines, SessionOptions(interim_interval_s=0.3))
    result = await conversation.run([UserTurn(speech(1.5)), UserTurn(speech(1.8))], answer_timeout_s=10)
    assert [t.agent_text for t in result.turns] == ["Paris.", "Tokyo."]

    first = [("user", "What is the capital of France?"), ("assistant", "Paris.")]
    after_reply = [(lines, opening) for lines, _, opening in model.read if not opening]
    assert (first, "") in after_reply, "the conversation is read ahead once the reply is done"
    heard = [(lines, opening) for lines, _, opening in model.read if opening]
    assert heard, "words heard during a turn are read ahead"
    # During the second turn: the first exchange, then the start of the caller's words.
    second = [(lines, opening) for lines, opening in heard if lines == first]
    assert second and all("And what is the capital of Japan?".startswith(o) for _, o in second)
    assert all(tools == ["end_call"] for _, tools, _ in model.read), "the tools a reply is offered"
