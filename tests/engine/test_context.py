from parley.engine.context import ConversationContext
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
