"""Calls through the speech-to-speech session on an ElevenLabs agent (the local Conversational AI server),
in real time: the same timeline, audio path and history as the pipeline's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from parley.audio.vad import EnergyVAD
from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.events import EventType
from parley.engine.options import EngineStack, SessionOptions
from parley.engine.speech_to_speech import NotInPipeline, SpeechToSpeechSession
from parley.engine.state import SessionState
from parley.providers.asr.scripted import ScriptedRecognizer
from parley.providers.options import parse_options
from parley.providers.registry import BuildRequest, ProviderError, provider
from parley.simulate import Conversation, UserTurn
from tests.engine.harness import RATE, agent, converse, speech, types
from tests.providers.elevenlabs.local_convai_server import LocalConvai, Rule
from tests.providers.realtime.kit import event_of

KEY = "xi-local-test"
LONG_ANSWER = (
    "Paris is the capital of France, and it is famous for the Eiffel Tower, the Louvre, "
    "wide boulevards, long lunches and a river called the Seine that runs through it."
)
WEATHER_TOOL = {
    "name": "weather",
    "description": "Weather for a city.",
    "kind": "static",
    "result": {"forecast": "sunny"},
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def convai_agent(**overrides: Any) -> AgentConfig:
    """The engine tests' agent, in speech-to-speech mode on an ElevenLabs agent reached with an
    organization's secret."""
    options = {"agent_id": "agent_local_0001", "api_key_secret": "eleven_key"}
    return agent(
        mode="speech_to_speech", s2s={"provider": "elevenlabs_convai", "options": options}, **overrides
    )


def convai_stack(
    config: AgentConfig, server: LocalConvai, secrets: dict[str, str] | None = None
) -> EngineStack:
    """The stack ``parley.stack`` builds for ``config``, the operator's ElevenLabs host set to the local
    server."""
    assert config.s2s is not None
    entry = provider("s2s", config.s2s.provider)
    options = parse_options("s2s", config.s2s.provider, config.s2s.options)
    host = Settings(elevenlabs_base_url=server.url, elevenlabs_convai_timeout_s=5.0)
    unused = NotInPipeline()
    return EngineStack(
        vad_factory=lambda: EnergyVAD(RATE, frame_ms=32, threshold_dbfs=-35.0),
        recognizer=ScriptedRecognizer([]),
        llm=unused,
        tts=unused,
        s2s=entry.factory(BuildRequest(options, host, {"eleven_key": KEY} if secrets is None else secrets)),
    )


async def test_elevenlabs_convai_call_with_a_parley_tool() -> None:
    config = convai_agent(first_message="Hi, this is Ada.", tools=[WEATHER_TOOL])
    oslo = {"city": "Oslo"}
    rules = [Rule("weather", "Let me check.", tool="weather", arguments=oslo, after_tool="It is {output}.")]
    async with LocalConvai(["What's the weather in Oslo?"], rules) as server:
        conv, result = await converse(config, convai_stack(config, server), [UserTurn(speech(1.0))])
    assert isinstance(conv.session, SpeechToSpeechSession)
    initiation = server.initiations[0]["conversation_config_override"]["agent"]
    assert initiation["first_message"] == "Hi, this is Ada." and "prompt" in initiation["prompt"]
    call = next(e for e in result.events if e.type is EventType.TOOL_CALL)
    assert call.data["tool"] == "weather" and call.data["arguments"] == {"city": "Oslo"}
    outcome = next(e for e in result.events if e.type is EventType.TOOL_RESULT)
    assert outcome.data["ok"] and outcome.data["result"] == '{"forecast": "sunny"}'
    sent = server.of_type("client_tool_result")[0]
    assert sent["tool_call_id"] == call.data["call_id"] and sent["result"] == '{"forecast": "sunny"}'
    assert sent["is_error"] is False
    turn = result.turns[0]
    assert turn.user_text == "What's the weather in Oslo?"
    assert turn.agent_text == 'Let me check. It is {"forecast": "sunny"}.'
    assert turn.v2v_ms is not None and 200 < turn.v2v_ms < 1000  # the server waits 300 ms of silence
    history = [(m.role, m.content) for m in conv.session.context.messages]
    assert history[0] == ("assistant", "Hi, this is Ada.")
    assert history[1] == ("user", "What's the weather in Oslo?")
    assert [role for role, _ in history[2:]] == ["assistant", "tool", "assistant"]
    assert history[-1][1] == 'Let me check. It is {"forecast": "sunny"}.'
    played = sum(len(c.pcm) for c in conv.speaker.clips) / 16000
    assert abs(played - 11 * 0.25) < 0.1, "greeting and answer played whole: eleven words of 250 ms"
    steps = [
        EventType.SESSION_STARTED,
        EventType.AGENT_REPLY_DONE,  # the greeting
        EventType.SPEECH_STARTED,
        EventType.SPEECH_STOPPED,
        EventType.TRANSCRIPT_FINAL,
        EventType.TOOL_CALL,
        EventType.TOOL_RESULT,
        EventType.AGENT_REPLY_DONE,  # one reply: the words before the call and the answer after it
        EventType.SESSION_ENDED,
    ]
    assert [kind for kind in types(result) if kind in steps] == steps
    assert conv.session.state is SessionState.ENDED
    assert server.pongs == server.pings and not server.problems


async def test_elevenlabs_convai_barge_in_keeps_only_what_was_heard() -> None:
    lines = ["Tell me about Paris.", "Stop, tell me about Rome instead."]
    rules = [Rule("Rome", "Rome is the capital of Italy."), Rule("Paris", LONG_ANSWER)]
    config = convai_agent()
    async with LocalConvai(lines, rules, ms_per_word=200) as server:
        conv, result = await converse(
            config, convai_stack(config, server), [UserTurn(speech(1.0)), UserTurn(speech(1.2), 1500)]
        )
    interrupted = result.turns[1]
    assert interrupted.bargein_ms is not None and interrupted.bargein_ms < 500
    cancelled = [e for e in result.events if e.type is EventType.REPLY_CANCELLED]
    assert cancelled and cancelled[0].data["interrupted"] and cancelled[0].data["reason"] == "barge_in"
    heard = cancelled[0].data["heard_text"]
    assert heard and LONG_ANSWER.startswith(heard) and len(heard) < len(LONG_ANSWER) / 2
    history = [(m.role, m.content) for m in conv.session.context.messages]
    assert history == [
        ("user", "Tell me about Paris."),
        ("assistant", heard),
        ("user", "Stop, tell me about Rome instead."),
        ("assistant", "Rome is the capital of Italy."),
    ]
    # ElevenLabs truncated its own memory of the reply; it agrees with what was played here, to a word.
    kept = [text for role, text in server.transcript if role == "agent"]
    assert kept[0] != LONG_ANSWER and abs(len(kept[0].split()) - len(heard.split())) <= 1
    assert not server.of_type("contextual_update"), "the server decided the interruption: nothing to correct"
    assert not server.problems


async def test_elevenlabs_convai_note_typed_text_stop_and_say_reach_the_agent() -> None:
    rules = [Rule("Paris", LONG_ANSWER), Rule("refund", "Refunds take five days.")]
    config = convai_agent()
    async with LocalConvai([], rules, ms_per_word=200) as server:
        options = SessionOptions(interim_interval_s=None)
        conversation = Conversation(config, convai_stack(config, server), options)
        session = conversation.session
        runner = asyncio.create_task(session.run())
        try:
            await event_of(conversation.timeline, EventType.SESSION_STARTED)
            session.add_note("The caller is a premium customer.", kind="whisper")
            session.send_text("Tell me about Paris.")
            await event_of(conversation.timeline, EventType.AGENT_AUDIO_STARTED)
            await asyncio.sleep(0.6)  # the caller listens a while, then presses "stop"
            session.interrupt()
            cut = await event_of(conversation.timeline, EventType.REPLY_CANCELLED)
            session.send_text("How long does a refund take?")
            await event_of(conversation.timeline, EventType.AGENT_REPLY_DONE)
            session.say("Thanks for calling, goodbye.", end_after="goodbye_said")
            async with asyncio.timeout(10):
                await runner  # the call ends once the goodbye was heard
        finally:
            session.end("test_done")
            await runner
    updates = [m["text"] for m in server.of_type("contextual_update")]
    assert "premium customer" in updates[0]
    heard = cut.data["heard_text"]
    assert heard and LONG_ANSWER.startswith(heard)
    assert updates[1] == f'Your last reply was cut off: the caller heard only "{heard}" and nothing after it.'
    typed = [m["text"] for m in server.of_type("user_message")]
    assert typed[:2] == ["Tell me about Paris.", "How long does a refund take?"]
    assert typed[2].endswith("word for word, and nothing else: Thanks for calling, goodbye.")
    history = [(m.role, m.content) for m in session.context.messages]
    assert history[-2:] == [
        ("assistant", "Refunds take five days."),
        ("assistant", "Thanks for calling, goodbye."),
    ]
    ended = next(e for e in conversation.timeline.events if e.type is EventType.SESSION_ENDED)
    assert ended.data["reason"] == "goodbye_said"
    assert not server.problems


async def test_elevenlabs_convai_refused_key_ends_the_call_as_unavailable() -> None:
    config = convai_agent()
    async with LocalConvai([], []) as server:
        _, result = await converse(config, convai_stack(config, server, {"eleven_key": "xi-wrong"}), [])
    ended = next(e for e in result.events if e.type is EventType.SESSION_ENDED)
    assert ended.data["reason"] == "provider_unavailable"
    error = next(e for e in result.events if e.type is EventType.ERROR)
    assert error.data["where"] == "s2s.connect" and "401" in error.data["error"]
    assert server.refused == [401]
    with pytest.raises(ProviderError):
        convai_stack(config, server, {})  # the agent names a secret the organization does not have
