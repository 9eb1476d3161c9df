"""``parley bench quality``: its scripted calls are valid agents and its judge tells right from wrong."""

from __future__ import annotations

from parley.bench.quality import judge
from parley.bench.quality_cases import CASES, QualityTurn
from parley.engine.agent import AgentConfig


def test_the_scripted_calls_cover_what_the_bench_promises() -> None:
    turns = [t for case in CASES for t in case.turns]
    assert len(CASES) >= 8 and len(turns) >= 30
    assert {t.expect for t in turns} == {"fact", "unknown", "tool", "end"}
    for case in CASES:
        agent = AgentConfig.model_validate(case.config())
        assert agent.grounded and agent.knowledge
        names = {tool.name for tool in agent.tools}
        assert {t.tool for t in case.turns if t.expect == "tool"} <= names


def test_a_fact_needs_its_words_and_none_of_the_wrong_ones() -> None:
    turn = QualityTurn("Open on Saturday?", "fact", ("closed", "no"), ("yes, we",))
    assert judge(turn, "No, we're closed on weekends.", [], False) == (True, "")
    assert not judge(turn, "Yes, we are open.", [], False)[0]
    assert not judge(turn, "Yes, we're closed... I mean open.", [], False)[0]
    assert not judge(turn, "", [], False)[0]
    assert not judge(turn, "I'm sorry, I don't know that.", [], False)[0], "the 'no' in 'know' is no no"
    price = QualityTurn("How much?", "fact", ("30",))
    assert not judge(price, "It costs 130 dollars.", [], False)[0]
    assert judge(price, "It costs 30 dollars.", [], False)[0]
    staff = QualityTurn("Do you have a plumber?", "fact", ("plumber",))
    assert judge(staff, "We have three plumbers on call.", [], False)[0], "a plural says its word"
    booked = [{"tool": "book", "arguments": {}}]
    assert judge(turn, "No, closed.", booked, False) == (False, "called ['book'] unasked")


def test_not_knowing_is_right_only_when_admitted() -> None:
    turn = QualityTurn("Do you have a pool?", "unknown")
    for said in (
        "I'm sorry, I don't know that. Can I take a message?",
        "I'm not sure about that, but I can have someone call you back.",
    ):
        assert judge(turn, said, [], False)[0], said
    assert not judge(turn, "Yes, there is a pool.", [], False)[0]


def test_a_tool_turn_needs_the_tool_with_the_right_arguments_and_goodbye_needs_a_hang_up() -> None:
    turn = QualityTurn(
        "Book Tuesday for Dana", "tool", tool="book", arguments={"day": ("tue",), "name": ("dana",)}
    )
    right = [{"tool": "book", "arguments": {"day": "Tuesday", "name": "Dana Lee"}}]
    wrong = [{"tool": "book", "arguments": {"day": "Friday", "name": "Dana"}}]
    assert judge(turn, "", right, False) == (True, "")
    assert judge(turn, "", wrong, False)[1].startswith("book called with wrong day")
    assert judge(turn, "Sure!", [], False) == (False, "book not called")
    bye = QualityTurn("Bye!", "end")
    assert judge(bye, "Goodbye!", [{"tool": "end_call", "arguments": {}}], False)[0]
    assert judge(bye, "Goodbye!", [], True)[0]
    assert not judge(bye, "Goodbye!", [], False)[0]
