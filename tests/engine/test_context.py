from parley.engine.context import PRUNE_TO, ConversationContext
from parley.engine.knowledge import KnowledgeIndex
from parley.providers.llm.base import ChatMessage, ToolCall


def words(text: str) -> int:
    return len(text.split())


def test_system_prompt_carries_knowledge() -> None:
    context = ConversationContext("Be brief.", ["Opening hours are 9 to 5."], 500, words)
    system = context.for_request()[0]
    assert system.role == "system"
    assert "Opening hours are 9 to 5." in system.content


def test_pruning_drops_oldest_turns_but_keeps_pending_and_system() -> None:
    context = ConversationContext("sys", [], 60, words)
    for i in range(10):
        context.add_user(f"question number {i} " + "pad " * 5)
        context.add_turn([ChatMessage("assistant", f"answer number {i}")])
    pending = ChatMessage("user", "latest question")
    request = context.for_request([pending])
    assert request[0].role == "system"
    assert request[-1] == pending
    assert "answer number 9" in request[-2].content
    assert not any("question number 0 " in m.content for m in request)
    assert sum(words(m.content) + 4 for m in request) <= 60


def test_tool_call_and_result_are_pruned_together() -> None:
    context = ConversationContext("sys", [], 40, words)
    call = ToolCall("c1", "lookup", {"q": "x"}, '{"q": "x"}')
    context.add_user("first " * 3)
    context.add_turn(
        [
            ChatMessage("assistant", "", (call,)),
            ChatMessage("tool", "result " * 5, tool_call_id="c1"),
            ChatMessage("assistant", "done"),
        ]
    )
    context.add_user("second " * 10)
    request = context.for_request([ChatMessage("user", "third " * 5)])
    roles = [m.role for m in request]
    assert ("tool" in roles) == any(m.tool_calls for m in request)


def test_for_request_is_pure_so_a_discarded_speculative_reply_forgets_nothing() -> None:
    context = ConversationContext("sys", [], 40, words)
    for i in range(6):
        context.add_user(f"question {i} " + "pad " * 4)
        context.add_turn([ChatMessage("assistant", f"answer {i}")])
    before = context.messages
    big = ChatMessage("user", "a very long speculative question " * 5)
    short_request = context.for_request([big])
    assert not any("question 0 " in m.content for m in short_request)
    assert context.messages == before, "building a request must not drop history"
    # The speculation was thrown away; a short question still gets the history the budget allows.
    request = context.for_request([ChatMessage("user", "hi")])
    assert len(request) > len(short_request)


def test_prune_cuts_back_at_once_so_the_start_of_the_history_stays_put_for_later_turns() -> None:
    context = ConversationContext("sys", [], 60, words)

    def turn(i: int) -> None:
        context.add_user(f"question number {i} " + "pad " * 5)
        context.add_turn([ChatMessage("assistant", f"answer number {i}")])

    for i in range(10):
        turn(i)
    sent = context.for_request()
    dropped = context.prune()
    assert dropped > 0 and context.prune() == 0
    kept = context.for_request()
    assert kept == [sent[0], *sent[len(sent) - len(kept) + 1 :]], "the newest turns are what stays"
    assert context._tokens(kept) <= 60 * PRUNE_TO + 5
    assert "answer number 9" in context.messages[-1].content
    # The next turns add to the end; what the model saw first stays the same (its prompt cache holds).
    first = context.messages[0]
    turn(10)
    assert context.prune() == 0 and context.messages[0] == first


def test_prune_keeps_the_newest_turn_even_when_it_alone_is_over_budget() -> None:
    context = ConversationContext("sys", [], 20, words)
    context.add_user("short")
    context.add_user("far too long " * 20)
    context.prune()
    assert context.take_back_last_user_turn() == "far too long " * 20


def _documents() -> KnowledgeIndex:
    return KnowledgeIndex.from_documents(
        [
            ("hours.md", "## Opening hours\nWe open Monday to Saturday, 9 to 5. We are closed on Sundays."),
            ("prices.txt", "A cleaning costs 90 dollars. A check-up costs 60 dollars."),
        ]
    )


def test_retrieved_passages_sit_right_before_the_last_user_message() -> None:
    context = ConversationContext(
        "Be brief.", ["Our name is Bright Smile."], 500, words, documents=_documents()
    )
    context.add_user("Hello")
    context.add_turn([ChatMessage("assistant", "Hi, how can I help?")])
    call = ToolCall("c1", "book", {"day": "monday"}, '{"day": "monday"}')
    pending = [
        ChatMessage("user", "Are you open on Sunday?"),
        ChatMessage("assistant", "", (call,)),
        ChatMessage("tool", "booked", tool_call_id="c1"),
    ]
    request = context.for_request(pending)
    roles = [m.role for m in request]
    assert roles == ["system", "user", "assistant", "system", "user", "assistant", "tool"]
    notes = request[3].content
    assert "closed on Sundays" in notes and "cleaning" not in notes
    assert "Bright Smile" in request[0].content and "Sundays" not in request[0].content
    # The stable prefix (system prompt and history) is the same as without documents.
    plain = ConversationContext("Be brief.", ["Our name is Bright Smile."], 500, words)
    plain.add_user("Hello")
    plain.add_turn([ChatMessage("assistant", "Hi, how can I help?")])
    assert plain.for_request(pending)[:3] == request[:3]


def test_no_notes_when_nothing_matches_and_notes_respect_their_budget() -> None:
    context = ConversationContext("sys", [], 500, words, documents=_documents(), retrieval_budget=30)
    assert [m.role for m in context.for_request([ChatMessage("user", "yes please")])] == ["system", "user"]
    request = context.for_request([ChatMessage("user", "how much does a cleaning cost on sundays")])
    notes = request[-2]
    assert notes.role == "system"
    passages = notes.content.split("\n- ")[1:]
    assert passages and sum(words(p) for p in passages) <= 30


def test_notes_take_room_from_old_history_not_from_the_question() -> None:
    context = ConversationContext("sys", [], 60, words, documents=_documents(), retrieval_budget=30)
    for i in range(5):
        context.add_user(f"question {i} " + "pad " * 4)
        context.add_turn([ChatMessage("assistant", f"answer {i}")])
    question = ChatMessage("user", "what does a cleaning cost")
    request = context.for_request([question])
    assert request[-1] == question and request[-2].role == "system"
    assert sum(words(m.content) + 4 for m in request) <= 60


def test_a_grounded_agent_is_told_how_to_answer_and_shown_an_example_call_before_the_real_one() -> None:
    from parley.engine.context import GROUNDING_RULES, grounding_examples

    count = lambda text: len(text.split())  # noqa: E731
    grounded = ConversationContext(
        "You are the clinic.",
        ["Closed on Sundays."],
        2000,
        count,
        grounded=True,
        examples=grounding_examples("hang_up"),
    )
    grounded.add_user("Are you open on Sunday?")
    request = grounded.for_request()
    assert request[0].content.startswith("You are the clinic.\n\n# What you know\n- Closed on Sundays.")
    assert request[0].content.endswith(GROUNDING_RULES)
    example = request[1:-1]
    assert example[0].role == "system" and example[-1].content.startswith("The example is over")
    assert any(c.name == "hang_up" for m in example for c in m.tool_calls), "the closing tool is shown used"
    assert request[-1].content == "Are you open on Sunday?"
    assert not any(c.name for m in grounding_examples(None) for c in m.tool_calls)

    # A general assistant, or an agent with nothing to be grounded in, gets neither.
    for context in (
        ConversationContext(
            "Be nice.", ["Paris is in France."], 2000, count, examples=grounding_examples(None)
        ),
        ConversationContext("Be nice.", [], 2000, count, grounded=True, examples=grounding_examples(None)),
    ):
        context.add_user("Hi")
        request = context.for_request()
        assert len(request) == 2 and GROUNDING_RULES not in request[0].content


def test_an_agent_whose_tools_act_is_shown_a_tool_result_told_to_the_caller() -> None:
    """Shown only a hang-up after a tool result, a small model hangs up (or thanks itself) after every
    action; with an action in the example, it says what was done."""
    from parley.engine.context import EXAMPLE_ACTION, grounding_examples

    def called(messages: list[ChatMessage]) -> list[str]:
        return [c.name for m in messages for c in m.tool_calls]

    example = grounding_examples("end_call", ["book_visit"])
    assert called(example) == [EXAMPLE_ACTION, "end_call"]
    result = next(i for i, m in enumerate(example) if m.role == "tool" and m.name == EXAMPLE_ACTION)
    assert example[result + 1].role == "assistant" and example[result + 1].content.startswith("Done")
    assert called(grounding_examples("end_call")) == ["end_call"], "no tool acts: no action shown"
    # The example's action never shares a name with one of the agent's tools.
    assert EXAMPLE_ACTION not in called(grounding_examples(None, [EXAMPLE_ACTION]))


def test_one_caller_message_is_searched_once_however_often_its_passages_are_read() -> None:
    """A reply reads the passages for its request, each tool round and the grounding checks; the
    documents are searched once per caller message, and a new message is searched afresh."""
    documents = _documents()
    searched: list[str] = []
    search = documents.search

    def counting(query: str, *args: object, **kwargs: object) -> object:
        searched.append(query)
        return search(query, *args, **kwargs)  # type: ignore[arg-type]

    documents.search = counting  # type: ignore[method-assign]
    context = ConversationContext("sys", [], 500, words, documents=documents)
    sunday = [ChatMessage("user", "Are you open on Sunday?")]
    first = context.for_request(sunday)
    assert context.for_request(sunday) == first
    assert [p.text for p in context.retrieve("Are you open on Sunday?")] == [
        p.text for p in context.retrieve("Are you open on Sunday?")
    ]
    assert searched == ["Are you open on Sunday?"]
    assert "closed on Sundays" in first[-2].content
    cleaning = context.for_request([ChatMessage("user", "How much does a cleaning cost?")])
    assert searched == ["Are you open on Sunday?", "How much does a cleaning cost?"]
    assert "90 dollars" in cleaning[-2].content
