"""Speech-to-speech calls through the session, on the local Realtime server, in real time: the same
timeline, audio path and history as the pipeline's (these mirror ``tests/engine/test_session.py``)."""

from __future__ import annotations

from parley.engine.events import EventType
from parley.engine.speech_to_speech import SpeechToSpeechSession
from parley.engine.state import SessionState
from parley.simulate import UserTurn
from tests.engine.harness import converse, speech, types
from tests.providers.realtime.kit import s2s_agent, s2s_stack
from tests.providers.realtime.local_server import LocalRealtime, Rule

LONG_ANSWER = (
    "Paris is the capital of France, and it is famous for the Eiffel Tower, the Louvre, "
    "wide boulevards, long lunches and a river called the Seine that runs through it."
)


async def test_realtime_spoken_question_gets_a_spoken_answer_in_order() -> None:
    config = s2s_agent()
    async with LocalRealtime(
        ["What is the capital of France?"], [Rule("capital", "Paris, of course.")]
    ) as server:
        conv, result = await converse(config, s2s_stack(config, server), [UserTurn(speech(1.0))])
    assert isinstance(conv.session, SpeechToSpeechSession)
    turn = result.turns[0]
    assert turn.user_text == "What is the capital of France?"
    assert turn.agent_text == "Paris, of course."
    assert turn.v2v_ms is not None and 200 < turn.v2v_ms < 1000  # 300 ms of the provider's VAD silence
    order = types(result)
    expected = [
        EventType.SESSION_STARTED,
        EventType.SPEECH_STARTED,
        EventType.SPEECH_STOPPED,
        EventType.TRANSCRIPT_FINAL,
        EventType.AGENT_AUDIO_STARTED,
        EventType.LLM_COMPLETED,
        EventType.AGENT_AUDIO_STOPPED,
        EventType.AGENT_REPLY_DONE,
        EventType.SESSION_ENDED,
    ]
    positions = [order.index(kind) for kind in expected]
    assert positions == sorted(positions)
    states = [e.data["new"] for e in result.events if e.type is EventType.STATE_CHANGED]
    assert states[:4] == ["listening", "processing", "speaking", "listening"]
    assert conv.session.state is SessionState.ENDED
    history = [(m.role, m.content) for m in conv.session.context.messages]
    assert history == [("user", "What is the capital of France?"), ("assistant", "Paris, of course.")]
    played = sum(len(c.pcm) for c in conv.speaker.clips) / 16000
    assert abs(played - 3 * 0.25) < 0.05, "the whole answer was played, at the loudspeaker's rate"
    done = next(e for e in result.events if e.type is EventType.AGENT_REPLY_DONE)
    assert done.data["input_tokens"] > 0 and done.data["output_tokens"] > 0, "usage for costs"
    assert not server.problems


async def test_realtime_tool_call_runs_the_parley_tool() -> None:
    config = s2s_agent(
        tools=[
            {
                "name": "weather",
                "description": "Weather for a city.",
                "kind": "static",
                "result": {"forecast": "sunny"},
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ]
    )
    rules = [
        Rule(
            "weather",
            "Let me check.",
            tool="weather",
            arguments={"city": "Oslo"},
            after_tool="Oslo will be sunny.",
        )
    ]
    async with LocalRealtime(["What's the weather in Oslo?"], rules) as server:
        conv, result = await converse(config, s2s_stack(config, server), [UserTurn(speech(1.0))])
    call = next(e for e in result.events if e.type is EventType.TOOL_CALL)
    assert call.data["tool"] == "weather" and call.data["arguments"] == {"city": "Oslo"}
    outcome = next(e for e in result.events if e.type is EventType.TOOL_RESULT)
    assert outcome.data["ok"] and outcome.data["result"] == '{"forecast": "sunny"}'
    output = next(
        e["item"] for e in server.received if e.get("item", {}).get("type") == "function_call_output"
    )
    assert output["call_id"] == call.data["call_id"] and output["output"] == '{"forecast": "sunny"}'
    # Words before the call and the answer with its result are one reply, as in the pipeline.
    assert result.turns[0].agent_text == "Let me check. Oslo will be sunny."
    done = [e for e in result.events if e.type is EventType.AGENT_REPLY_DONE]
    assert len(done) == 1 and done[0].data["reply_id"] == call.data["reply_id"]
    completed = [e for e in result.events if e.type is EventType.LLM_COMPLETED]
    assert len(completed) == 2 and completed[1].data["output_tokens"] > completed[0].data["output_tokens"]
    roles = [m.role for m in conv.session.context.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    assert conv.session.context.messages[-1].content == "Let me check. Oslo will be sunny."
    played = sum(len(c.pcm) for c in conv.speaker.clips) / 16000
    assert abs(played - 7 * 0.25) < 0.05, "both parts (seven words) were played whole"
    assert not server.problems


async def test_realtime_barge_in_stops_audio_fast_and_keeps_only_what_was_heard() -> None:
    lines = ["Tell me about Paris.", "Stop, tell me about Rome instead."]
    rules = [Rule("Rome", "Rome is the capital of Italy."), Rule("Paris", LONG_ANSWER)]
    config = s2s_agent()
    async with LocalRealtime(lines, rules, ms_per_word=200) as server:
        conv, result = await converse(
            config, s2s_stack(config, server), [UserTurn(speech(1.0)), UserTurn(speech(1.2), 1500)]
        )
    interrupted = result.turns[1]
    # Speech onset to agent silence at the loudspeaker; the provider's VAD needs 60 ms of voice first.
    assert interrupted.bargein_ms is not None and interrupted.bargein_ms < 500
    cancelled = [e for e in result.events if e.type is EventType.REPLY_CANCELLED]
    assert cancelled and cancelled[0].data["interrupted"] and cancelled[0].data["reason"] == "barge_in"
    heard = cancelled[0].data["heard_text"]
    assert heard and LONG_ANSWER.startswith(heard) and len(heard) < len(LONG_ANSWER) / 2
    history = [(m.role, m.content) for m in conv.session.context.messages]
    assert history[:2] == [("user", "Tell me about Paris."), ("assistant", heard)]
    assert history[2:] == [
        ("user", "Stop, tell me about Rome instead."),
        ("assistant", "Rome is the capital of Italy."),
    ]
    truncate = next(e for e in server.received if e["type"] == "conversation.item.truncate")
    heard_ms = cancelled[0].data["heard_ms"]
    assert truncate["audio_end_ms"] == heard_ms
    assert abs(heard_ms / 1000 - len(heard.split()) * 0.2) < 0.25, "the provider keeps what was played"
    item = next(i for i in server.items if i["id"] == truncate["item_id"])
    assert item["truncated_ms"] == heard_ms and "transcript" not in item["content"][0]
    assert not server.problems
