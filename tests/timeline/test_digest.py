"""Transcript turns and latency figures read off a timeline."""

from __future__ import annotations

from typing import Any

from parley.timeline.digest import build_turns, latency_summary, unfinished_replies
from parley.timeline.envelope import Envelope


def timeline(*items: tuple[str, float, dict[str, Any]]) -> list[Envelope]:
    return [Envelope("s", i + 1, kind, 100.0 + t, 0.0, data) for i, (kind, t, data) in enumerate(items)]


def test_turns_keep_what_was_heard_and_when() -> None:
    events = timeline(
        ("session.started", 0.0, {}),
        ("speech.started", 1.0, {"at": 100.5}),
        ("speech.stopped", 2.0, {"at": 101.8}),
        ("transcript.final", 2.1, {"text": "Tell me about Paris.", "source": "speech", "audio_seconds": 1.3}),
        ("agent.text", 2.2, {"reply_id": "r1", "segment": 0, "text": "Paris is lovely,"}),
        ("agent.text", 2.3, {"reply_id": "r1", "segment": 1, "text": "and big."}),
        ("agent.audio.started", 2.4, {"reply_id": "r1", "at": 102.4}),
        ("speech.started", 3.0, {"at": 103.0}),  # barge-in
        ("barge_in", 3.0, {"reply_id": "r1", "latency_ms": 20.0}),
        ("reply.cancelled", 3.4, {"reply_id": "r1", "heard_text": "Paris is", "interrupted": True}),
        ("agent.audio.stopped", 3.4, {"reply_id": "r1", "at": 103.02}),
        ("speech.stopped", 3.9, {"at": 103.9}),
        ("transcript.final", 4.0, {"text": "Stop.", "source": "speech", "audio_seconds": 0.9}),
        ("transcript.final", 5.0, {"text": "typed words", "source": "text"}),
    )
    turns = build_turns(events)
    assert [(t.speaker, t.text, t.interrupted) for t in turns] == [
        ("user", "Tell me about Paris.", False),
        ("agent", "Paris is", True),
        ("user", "Stop.", False),
        ("user", "typed words", False),
    ]
    assert (turns[0].start_ms, turns[0].end_ms) == (500, 1800)
    assert (turns[1].start_ms, turns[1].end_ms) == (2400, 3020)
    assert (turns[2].start_ms, turns[2].end_ms) == (3000, 3900)
    assert turns[3].start_ms == turns[3].end_ms == 5000


def test_a_resumed_turn_starts_at_its_first_words_and_a_dismissed_backchannel_is_forgotten() -> None:
    events = timeline(
        ("session.started", 0.0, {}),
        ("speech.started", 1.0, {"at": 101.0}),  # "uh-huh" over the agent: dismissed
        ("barge_in.dismissed", 1.5, {"text": "uh-huh"}),
        ("speech.started", 2.0, {"at": 102.0}),
        ("speech.stopped", 2.5, {"at": 102.5}),
        ("speech.started", 2.9, {"at": 102.9}),
        ("turn.resumed", 2.9, {"at": 102.9}),
        ("speech.stopped", 3.5, {"at": 103.5}),
        ("transcript.final", 4.0, {"text": "What's the capital of Australia?", "source": "speech"}),
        ("agent.text", 4.1, {"reply_id": "r2", "text": "Canberra."}),
        ("agent.audio.started", 4.2, {"reply_id": "r2", "at": 104.2}),
        ("agent.audio.stopped", 5.0, {"reply_id": "r2", "at": 105.0}),
        ("agent.reply.done", 5.0, {"reply_id": "r2", "input_tokens": 10, "output_tokens": 3}),
    )
    turns = build_turns(events)
    assert [(t.speaker, t.start_ms, t.end_ms) for t in turns] == [("user", 2000, 3500), ("agent", 4200, 5000)]


def test_a_reply_cut_off_by_a_dead_process_ends_with_what_was_heard() -> None:
    events = timeline(
        ("session.started", 0.0, {}),
        ("transcript.final", 1.0, {"text": "Opening hours?", "source": "text"}),
        ("agent.text", 1.1, {"reply_id": "r1", "segment": 0, "text": "Nine to five."}),
        ("agent.audio.started", 1.2, {"reply_id": "r1", "at": 101.2}),
        ("agent.audio.stopped", 2.0, {"reply_id": "r1", "at": 102.0}),
        ("agent.reply.done", 2.0, {"reply_id": "r1"}),
        ("transcript.final", 3.0, {"text": "And Sundays?", "source": "text"}),
        ("agent.text", 3.1, {"reply_id": "r2", "segment": 0, "text": "Closed on Sundays."}),
        ("agent.text", 3.2, {"reply_id": "r2", "segment": 1, "text": "Also on holidays."}),
        ("agent.audio.started", 3.3, {"reply_id": "r2", "at": 103.3}),
        (
            "agent.audio.played",
            4.0,
            {"reply_id": "r2", "segment": 0, "at": 104.1, "heard_text": "Closed on Sundays."},
        ),
        (
            "agent.text",
            4.2,
            {"reply_id": "r3", "segment": 0, "text": "Never spoken."},
        ),  # announced, not played
    )
    closing = unfinished_replies(events, "interrupted")
    assert closing == [
        (
            "reply.cancelled",
            {
                "reply_id": "r2",
                "reason": "interrupted",
                "heard_text": "Closed on Sundays.",
                "interrupted": True,
            },
        ),
        ("agent.audio.stopped", {"reply_id": "r2", "reason": "interrupted", "at": 104.1}),
        (
            "reply.cancelled",
            {"reply_id": "r3", "reason": "interrupted", "heard_text": "", "interrupted": True},
        ),
    ]
    last = events[-1]
    tail = [Envelope("s", last.seq + n, kind, last.t, 0.0, data) for n, (kind, data) in enumerate(closing, 1)]
    turns = build_turns([*events, *tail])
    assert [(t.speaker, t.text, t.interrupted) for t in turns] == [
        ("user", "Opening hours?", False),
        ("agent", "Nine to five.", False),
        ("user", "And Sundays?", False),
        ("agent", "Closed on Sundays.", True),
    ]
    assert (turns[-1].start_ms, turns[-1].end_ms) == (3300, 4100), "it lasted as long as what was heard"
    assert unfinished_replies([*events, *tail], "interrupted") == [], "closing twice adds nothing"


def test_latency_summary() -> None:
    events = timeline(
        ("agent.audio.started", 0.1, {"reply_id": "r0", "v2v_ms": 40.0}),  # the greeting: nobody spoke yet
        ("transcript.final", 1.0, {"text": "a"}),
        ("llm.first_token", 1.1, {"reply_id": "r1", "latency_ms": 100.0, "round": 0}),
        ("agent.audio.started", 1.2, {"reply_id": "r1", "v2v_ms": 300.0}),
        ("transcript.final", 2.0, {"text": "b"}),
        ("agent.audio.started", 2.2, {"reply_id": "r2", "v2v_ms": 500.0}),
        ("barge_in", 2.5, {"reply_id": "r2", "latency_ms": 25.0}),
        ("reply.cancelled", 2.6, {"reply_id": "r2", "interrupted": True}),
        ("error", 2.7, {"where": "asr"}),
    )
    summary = latency_summary(events)
    v2v = summary["latency"]["voice_to_voice_ms"]
    assert v2v["count"] == 2 and v2v["p50"] == 400.0 and v2v["max"] == 500.0
    assert summary["latency"]["barge_in_ms"]["p90"] == 25.0
    assert summary["counts"] == {
        "user_turns": 2,
        "agent_replies": 0,
        "barge_ins": 1,
        "interruptions": 1,
        "underruns": 0,
        "errors": 1,
        "tool_calls": 0,
    }
