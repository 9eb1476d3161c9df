"""The transcript convention for base models: stable prefix, tool lines and speakable replies."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from parley.providers.llm.base import ChatMessage, LLMChunk, ToolCall, ToolSpec
from parley.providers.llm.llamacpp import _ReplyState, _Request
from parley.providers.llm.prompting import (
    ReplyCleaner,
    build_prompt,
    parse_tool_line,
    stable_prefix,
)

SYSTEM = ChatMessage("system", "You answer for Bella's Bakery.\nOpen 7am to 3pm.")
END_CALL = ToolSpec("end_call", "End the phone call.")


def clean(*pieces: str) -> str:
    cleaner = ReplyCleaner()
    out = ""
    for piece in pieces:
        text, stopped = cleaner.feed(piece)
        out += text
        if stopped:
            return out
    return out + cleaner.flush()


def test_prefix_stays_the_same_as_the_conversation_grows() -> None:
    turn1 = build_prompt([SYSTEM, ChatMessage("user", "Hi")])
    turn2 = build_prompt(
        [SYSTEM, ChatMessage("user", "Hi"), ChatMessage("assistant", "Hello!"), ChatMessage("user", "Hours?")]
    )
    assert turn1.prefix.startswith(stable_prefix())
    assert "Bella's Bakery" in turn1.prefix and "Open 7am to 3pm." in turn1.prefix
    # Everything but the trailing "Assistant:" cue is reused verbatim by the next turn.
    assert turn2.text().startswith(turn1.text().removesuffix("Assistant:"))
    assert turn2.text().endswith("User: Hi\nAssistant: Hello!\nUser: Hours?\nAssistant:")


def test_history_lines_are_single_lines_and_tool_turns_use_the_call_convention() -> None:
    call = ToolCall("c1", "end_call", {}, raw_arguments="{}")
    prompt = build_prompt(
        [
            SYSTEM,
            ChatMessage("user", "Bye\nnow"),
            ChatMessage("assistant", tool_calls=(call,)),
            ChatMessage("tool", "ok", tool_call_id="c1"),
        ],
        [END_CALL],
    )
    assert prompt.lines == ("User: Bye now", "Assistant: CALL end_call {}", "Result: ok")
    assert "- end_call: End the phone call." in prompt.prefix
    assert prompt.text(skip=2).endswith("\n\nResult: ok\nAssistant:")


def test_tool_lines_parse_into_tool_calls() -> None:
    offered = {"get_weather", "end_call"}
    call = parse_tool_line(' CALL get_weather {"city": "Paris"}', "id1", offered)
    assert call == ToolCall("id1", "get_weather", {"city": "Paris"}, '{"city": "Paris"}')
    broken = parse_tool_line("CALL get_weather {city: Paris", "id2", offered)
    assert broken is not None and broken.arguments == {} and broken.raw_arguments == "{city: Paris"
    assert parse_tool_line("CALL end_call", "id3", offered) == ToolCall("id3", "end_call", {}, "")
    assert parse_tool_line("CALL launch_rockets {}", "id4", offered) is None


def test_cleaner_strips_labels_markup_and_stops_at_the_next_speaker() -> None:
    assert clean(" Assis", "tant: The **capital** is", " Paris.\nUser: thanks") == "The capital is Paris."
    assert clean(" Sure! User: next") == "Sure! "
    assert clean("\n", " Hello <end_of_turn>there") == "Hello there"
    assert clean("See [the docs](http://x) ok") == "See the docs ok"
    assert clean(" AI is neat.") == "AI is neat."


def test_cleaner_releases_text_early() -> None:
    cleaner = ReplyCleaner()
    assert cleaner.feed(" Paris is")[0] == "Paris is"  # not held back: it cannot become a label
    assert cleaner.feed(" lovely. Us") == (" lovely. ", False)  # "Us" might start "User:"
    assert cleaner.feed("ually") == ("Usually", False)


@given(st.lists(st.text(alphabet="abc :\n*<>Uuser", max_size=8), max_size=12))
def test_cleaner_never_speaks_a_label_or_a_newline(pieces: list[str]) -> None:
    out = clean(*pieces)
    assert "\n" not in out and "User:" not in out and "Assistant:" not in out


class FakeDetokenizer:
    """Token ids index into a list of byte pieces, as llama.cpp's detokenize would return them."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = pieces

    def detokenize(self, tokens: list[int]) -> bytes:
        return b"".join(self.pieces[t] for t in tokens)


def replay(pieces: list[bytes], offered: set[str]) -> list[LLMChunk]:
    out: list[LLMChunk] = []
    request = _Request(build_prompt([]), offered, 64, 0.0, threading.Event(), out.append, 0.0)  # type: ignore[arg-type]
    state = _ReplyState(request, FakeDetokenizer(pieces))
    for token in range(len(pieces)):
        if state.add(token):
            break
    state.finish(1)
    return out


def test_a_call_line_becomes_one_tool_call_and_is_never_spoken() -> None:
    chunks = replay([b" CA", b"LL", b" end", b"_call", b" {}", b"\n", b"User"], {"end_call"})
    assert [c.tool_call.name for c in chunks if c.tool_call] == ["end_call"]
    assert not any(c.text for c in chunks)


def test_text_that_only_starts_like_call_is_spoken_in_full() -> None:
    assert "".join(c.text for c in replay([b" CA", b"LM down, it's fine."], {"end_call"})) == (
        "CALM down, it's fine."
    )
    assert "".join(c.text for c in replay([b" CA"], {"end_call"})) == "CA"


def test_multibyte_characters_split_across_tokens_are_joined() -> None:
    euro = "€".encode()
    chunks = replay([b" It costs 3", euro[:1], euro[1:], b".", b"\n"], set())
    assert "".join(c.text for c in chunks) == "It costs 3€."
