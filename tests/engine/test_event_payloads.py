"""Every event a real call emits reads as its typed payload (``parley.engine.event_payloads``).

These guard the emitters (the session, its replies, rooms, the coach): an event that gains a key, loses a
required one or changes a value's type fails here, live and as stored (JSON), before a consumer breaks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence

import pytest

from parley.analysis.coach import LiveCoach
from parley.audio.vad import EnergyVAD
from parley.bench.latency import breakdown
from parley.engine.coaching import CoachingSettings
from parley.engine.event_payloads import (
    PAYLOADS,
    AgentText,
    MalformedPayload,
    ReplyCancelled,
    ToolCalled,
    TranscriptFinal,
    WrongEventType,
    payload,
    payload_class,
    problems,
)
from parley.engine.events import Event, EventType, Timeline
from parley.engine.session import SessionOptions
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.llm.scripted import ScriptRule
from parley.rooms import Mode, Participant, Role, Room, per_leg_transcription
from parley.simulate import Conversation, UserTurn
from parley.store.types import plain_json
from parley.timeline.envelope import Envelope
from tests.engine.harness import agent, converse, speech, stack
from tests.providers.realtime.kit import s2s_agent, s2s_stack
from tests.providers.realtime.local_server import LocalRealtime, Rule
from tests.rooms.helpers import Ear, Tone, play

LONG_ANSWER = (
    "It will be sunny in Paris, around twenty four degrees, with a light breeze from the west "
    "in the afternoon and a clear, warm evening that is perfect for a walk along the river."
)


def _stored(event: Event) -> Envelope:
    """The event as a stored call gives it back: through the timeline's envelope and JSON."""
    return Envelope.loads(Envelope.wrap(event, 1).dumps())


def _check(events: Sequence[Event]) -> None:
    found = [p for e in events for p in problems(e)] + [p for e in events for p in problems(_stored(e))]
    assert found == [], "\n".join(found)
    untyped = {str(e.type) for e in events if payload_class(e.type) is None}
    assert untyped <= {str(EventType.METRICS)}, f"event types without a payload class: {untyped}"
    for event in events:
        cls = payload_class(event.type)
        if cls is not None:
            assert event.payload(cls) == payload(_stored(event), cls), "live and stored read the same"


async def test_every_event_of_a_call_with_a_tool_and_a_barge_in_reads_as_its_payload() -> None:
    config = agent(
        first_message="Hello!",
        tools=[
            {
                "name": "weather",
                "kind": "static",
                "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                "result": {"forecast": "sunny", "high_c": 24},
            }
        ],
    )
    lines = ["What's the weather in Paris?", "Stop, thanks, that is enough.", "And in", "And in Rome?"]
    rules = [
        ScriptRule.say("Rome", "Rainy."),
        ScriptRule.say("enough", "All right."),
        ScriptRule.say("And in", "In where?"),
        ScriptRule.after_tool("sunny", LONG_ANSWER),
        ScriptRule.call("weather", "weather", {"city": "Paris"}),
    ]
    conversation = Conversation(config, stack(lines, rules), SessionOptions(interim_interval_s=0.3))
    result = await conversation.run(
        [
            UserTurn(speech(1.0)),
            UserTurn(speech(1.2), barge_in_at_ms=1500),
            UserTurn(speech(1.6, pause_at=0.8, pause=0.6)),
        ],
        answer_timeout_s=10,
    )
    emitted = {e.type for e in result.events}
    wanted = {
        EventType.SESSION_STARTED,
        EventType.SESSION_ENDED,
        EventType.STATE_CHANGED,
        EventType.SPEECH_STARTED,
        EventType.SPEECH_STOPPED,
        EventType.TRANSCRIPT_INTERIM,
        EventType.TRANSCRIPT_FINAL,
        EventType.TURN_ENDED,
        EventType.TURN_RESUMED,
        EventType.LLM_REQUEST,
        EventType.LLM_FIRST_TOKEN,
        EventType.LLM_COMPLETED,
        EventType.TOOL_CALL,
        EventType.TOOL_RESULT,
        EventType.AGENT_TEXT,
        EventType.TTS_FIRST_BYTE,
        EventType.AGENT_AUDIO_STARTED,
        EventType.AGENT_AUDIO_PLAYED,
        EventType.AGENT_AUDIO_STOPPED,
        EventType.AGENT_REPLY_DONE,
        EventType.BARGE_IN,
        EventType.REPLY_CANCELLED,
    }
    assert wanted <= emitted, f"the call did not show {sorted(wanted - emitted)}"
    _check(result.events)

    # What consumers read, typed: the tool's arguments, what was heard of the cut-off answer.
    called = next(e.payload(ToolCalled) for e in result.events if e.type is EventType.TOOL_CALL)
    assert (called.tool, dict(called.arguments)) == ("weather", {"city": "Paris"})
    cut = next(e.payload(ReplyCancelled) for e in result.events if e.type is EventType.REPLY_CANCELLED)
    assert cut.interrupted and cut.heard_text and LONG_ANSWER.startswith(cut.heard_text)
    stages = breakdown(result)  # the latency bench reads the same payloads
    measured = ("endpoint_wait", "llm_first_token", "first_clause", "tts_first_byte")
    assert all(stages[name]["p50"] is not None for name in measured)


async def test_every_event_of_a_speech_to_speech_call_reads_as_its_payload() -> None:
    """The other engine emits the same event types with keys of its own (status, audio tokens, heard_ms)."""
    config = s2s_agent(
        tools=[
            {
                "name": "weather",
                "description": "Weather for a city.",
                "kind": "static",
                "result": {"forecast": "sunny"},
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ]
    )
    lines = ["What's the weather in Oslo?", "Stop, that is enough."]
    rules = [
        Rule("enough", "All right."),
        Rule("weather", "Let me check.", tool="weather", arguments={"city": "Oslo"}, after_tool=LONG_ANSWER),
    ]
    async with LocalRealtime(lines, rules, ms_per_word=200) as server:
        _, result = await converse(
            config, s2s_stack(config, server), [UserTurn(speech(1.0)), UserTurn(speech(1.2), 2500)]
        )
    emitted = {e.type for e in result.events}
    wanted = {EventType.TOOL_CALL, EventType.TOOL_RESULT, EventType.BARGE_IN, EventType.REPLY_CANCELLED}
    assert wanted | {EventType.LLM_COMPLETED, EventType.AGENT_REPLY_DONE} <= emitted
    _check(result.events)


async def test_every_event_of_a_coached_room_reads_as_its_payload() -> None:
    timeline = Timeline()
    hinted = asyncio.Event()
    coach = LiveCoach(
        CoachingSettings(enabled=True),
        lambda kind, data: timeline.emit(Event(kind, "call", data=data)),
        on_hint=lambda _: hinted.set(),
    )
    transcription = per_leg_transcription(
        ScriptedRecognizer(["honestly the price is too high for us"]),
        lambda: EnergyVAD(16000, frame_ms=20, threshold_dbfs=-35.0),
        silence_s=0.6,
        on_utterance=coach.on_utterance,
    )
    room = Room("call", timeline, transcriber_factory=transcription, record=False)
    room.join(Participant("cust", Role.CUSTOMER, Mode.SPEAK), Ear())
    room.join(Participant("rep", Role.REP, Mode.SPEAK), Ear())
    room.join(Participant("coach", Role.COACH, Mode.LISTEN), Ear())
    await play(room, 40, {"cust": Tone(220.0)})
    await play(room, 50, {})
    room.set_mode("coach", Mode.WHISPER)
    await asyncio.wait_for(hinted.wait(), 5)  # the hint is delivered in a task of its own
    await room.close()
    emitted = {e.type for e in timeline.events}
    assert {
        EventType.ROOM_JOINED,
        EventType.ROOM_UTTERANCE,
        EventType.ROOM_MODE_CHANGED,
        EventType.ROOM_LEFT,
        EventType.COACH_TRIGGER,
        EventType.COACH_HINT,
    } <= emitted
    _check(timeline.events)


def test_reading_is_tolerant_of_old_records_and_strict_about_the_type() -> None:
    old = Envelope("s", 1, "agent.text", 1.0, 0.0, {"reply_id": "r1", "text": "Hi.", "gone_key": 3})
    assert payload(old, AgentText) == AgentText(reply_id="r1", text="Hi.")  # extra key ignored, defaults
    with pytest.raises(WrongEventType, match=re.escape("agent.text")):
        payload(old, TranscriptFinal)
    with pytest.raises(MalformedPayload, match="text") as raised:
        Event(EventType.TRANSCRIPT_FINAL, "s", data={"source": "speech"}).payload(TranscriptFinal)
    assert raised.value.missing == ("text",)
    assert problems(Event(EventType.TRANSCRIPT_FINAL, "s", data={"text": 3, "new": 1})) == [
        "transcript.final: text=3 is not str",
        "transcript.final: undeclared key new",
    ]


def test_types_without_a_payload_are_forwarded_untouched() -> None:
    assert EventType.METRICS not in PAYLOADS
    future = Envelope("s", 1, "call.future_thing", 1.0, 0.0, {"anything": [1, 2]})
    assert payload_class(future.type) is None and problems(future) == []
    assert plain_json(json.loads(future.dumps())["d"]) == {"anything": [1, 2]}
