"""What transports and supervisors do to a speech-to-speech call: typed input, supervisor notes, a hand-over,
hanging up by tool, a provider that is down, and the live session choosing the engine by the agent's mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from parley.engine.agent import AgentConfig
from parley.engine.events import EventType, Timeline
from parley.engine.options import SessionOptions
from parley.engine.speech_to_speech import SpeechToSpeechSession
from parley.engine.state import SessionState
from parley.server.live import LiveLimits, LiveSession
from parley.simulation import Loudspeaker, Microphone
from parley.stack import build_tools
from tests.engine.harness import RATE, speech
from tests.providers.realtime.kit import event_of, s2s_agent, s2s_stack
from tests.providers.realtime.local_server import LocalRealtime, Rule


@asynccontextmanager
async def call(
    config: AgentConfig, server: LocalRealtime
) -> AsyncIterator[tuple[SpeechToSpeechSession, Timeline, Microphone, Loudspeaker]]:
    """A running speech-to-speech session with a microphone (silence until it says something)."""
    timeline, speaker = Timeline(), Loudspeaker(RATE)
    session = SpeechToSpeechSession(
        config,
        s2s_stack(config, server),
        speaker,
        timeline,
        build_tools(config),
        SessionOptions(interim_interval_s=None),
    )
    runner = asyncio.create_task(session.run())
    try:
        async with Microphone(session, RATE) as mic:
            yield session, timeline, mic, speaker
    finally:
        session.end("hangup")
        await runner


def client_events(server: LocalRealtime, kind: str) -> list[dict[str, Any]]:
    return [e for e in server.received if e["type"] == kind]


async def test_realtime_typed_text_is_answered_and_notes_reach_the_model() -> None:
    config = s2s_agent()
    async with LocalRealtime([], [Rule("capital", "Paris, of course.")]) as server:
        async with call(config, server) as (session, timeline, _, _speaker):
            session.add_note("Offer the premium plan.", kind="whisper", by="ann")
            session.send_text("What is the capital of France?")
            done = await event_of(timeline, EventType.AGENT_REPLY_DONE)
        assert session.state is SessionState.ENDED
    typed = next(e for e in timeline.events if e.type is EventType.TRANSCRIPT_FINAL)
    assert typed.data == {"text": "What is the capital of France?", "source": "text"}
    said = [e.data["text"] for e in timeline.events if e.type is EventType.AGENT_TEXT]
    assert said == ["Paris, of course."] and done.data["output_tokens"] > 0
    items = [e["item"] for e in client_events(server, "conversation.item.create")]
    assert items[0]["role"] == "system" and "Offer the premium plan." in items[0]["content"][0]["text"]
    assert items[1] == {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "What is the capital of France?"}],
    }
    note = next(e for e in timeline.events if e.type is EventType.SUPERVISOR_NOTE)
    assert note.data == {"kind": "whisper", "by": "ann", "text": "Offer the premium plan."}
    assert not server.problems


async def test_realtime_hand_over_hears_without_answering_until_taken_back() -> None:
    config = s2s_agent()
    lines = ["Can I speak to a person?", "Thanks, back to the bot."]
    server = LocalRealtime(lines, [Rule("bot", "I'm back.")])
    async with server, call(config, server) as (session, timeline, mic, _speaker):
        session.hand_over("supervisor ann")
        await mic.say(speech(1.0).pcm, RATE)
        await event_of(timeline, EventType.TRANSCRIPT_FINAL)
        session.take_back()
        await mic.say(speech(1.0).pcm, RATE)
        await event_of(timeline, EventType.AGENT_REPLY_DONE)
    updates = [e["session"] for e in client_events(server, "session.update")]
    held = [u["audio"]["input"]["turn_detection"]["create_response"] for u in updates[1:]]
    assert held == [False, True], "the model answered nobody while a person had the call"
    kinds = [e.type for e in timeline.events]
    assert kinds.index(EventType.HANDOVER_STARTED) < kinds.index(EventType.HANDOVER_ENDED)
    replies = [e for e in timeline.events if e.type is EventType.AGENT_REPLY_DONE]
    assert len(replies) == 1 and replies[0].t > next(
        e.t for e in timeline.events if e.type is EventType.HANDOVER_ENDED
    )
    history = [(m.role, m.content) for m in session.context.messages]
    assert history == [
        ("user", "Can I speak to a person?"),
        ("user", "Thanks, back to the bot."),
        ("assistant", "I'm back."),
    ]
    assert not server.problems


async def test_realtime_end_call_hangs_up_after_the_goodbye_is_heard() -> None:
    config = s2s_agent()
    rules = [Rule("bye", "Goodbye, have a nice day!", tool="end_call")]
    async with LocalRealtime(["Thanks, bye."], rules) as server:
        timeline, speaker = Timeline(), Loudspeaker(RATE)
        session = SpeechToSpeechSession(
            config, s2s_stack(config, server), speaker, timeline, build_tools(config)
        )
        runner = asyncio.create_task(session.run())
        async with Microphone(session, RATE) as mic:
            await mic.say(speech(1.0).pcm, RATE)
            async with asyncio.timeout(10):
                await runner
    ended = timeline.events[-1]
    assert ended.type is EventType.SESSION_ENDED and ended.data["reason"] == "agent_ended_call"
    call_at = next(e.t for e in timeline.events if e.type is EventType.TOOL_CALL)
    goodbye_end = speaker.last_audio_end()
    assert goodbye_end is not None and call_at >= goodbye_end - 0.05, "the goodbye was played out first"
    played = sum(len(c.pcm) for c in speaker.clips) / RATE
    assert abs(played - 5 * 0.25) < 0.05, "all five words were heard"
    assert not server.problems


async def test_realtime_provider_down_ends_the_call_with_a_reason() -> None:
    config = s2s_agent()
    async with LocalRealtime([], [], api_key="sk-another-key") as server:
        timeline = Timeline()
        session = SpeechToSpeechSession(config, s2s_stack(config, server), Loudspeaker(RATE), timeline)
        async with asyncio.timeout(10):
            await session.run()
    error = next(e for e in timeline.events if e.type is EventType.ERROR)
    assert error.data["where"] == "s2s.connect" and "ProviderUnavailable" in error.data["error"]
    assert timeline.events[-1].data == {"reason": "provider_unavailable"}
    assert server.refused == [401]


async def test_realtime_live_session_runs_the_speech_to_speech_engine_by_mode() -> None:
    config = s2s_agent()
    async with LocalRealtime([], []) as server:
        live = LiveSession(
            config,
            s2s_stack(config, server),
            input_rate=RATE,
            output_rate=RATE,
            limits=LiveLimits(idle_timeout_s=30, max_duration_s=60, reconnect_grace_s=5),
            options=SessionOptions(),
        )
        assert isinstance(live.engine, SpeechToSpeechSession)
        live.start()
        live.touch()
        live.end("hangup")
        await live.wait_closed()
    assert live.history() == [] and live.engine.state is SessionState.ENDED


class PhoneLine(Loudspeaker):
    """A line that confirms playout late (as Twilio's marks do): audio is heard 300 ms after it was due."""

    LAG_S = 0.3

    def heard_until(self, cut: float) -> float:
        return cut - self.LAG_S


async def test_realtime_barge_in_on_a_phone_line_truncates_at_what_the_line_confirmed() -> None:
    config = s2s_agent()
    answer = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    async with LocalRealtime(["Count.", "Stop."], [Rule("Count", answer), Rule("Stop", "Okay.")]) as server:
        timeline, line = Timeline(), PhoneLine(RATE)
        session = SpeechToSpeechSession(config, s2s_stack(config, server), line, timeline)
        runner = asyncio.create_task(session.run())
        async with Microphone(session, RATE) as mic:
            await mic.say(speech(1.0).pcm, RATE)
            started = await event_of(timeline, EventType.AGENT_AUDIO_STARTED)
            await asyncio.sleep(1.5)  # the caller listens to the count for a while (the scenario, not a wait)
            await mic.say(speech(1.0).pcm, RATE)
            cancelled = await event_of(timeline, EventType.REPLY_CANCELLED)
            barged = await event_of(timeline, EventType.BARGE_IN)
        session.end("hangup")
        await runner
    heard_ms = cancelled.data["heard_ms"]
    due_ms = (barged.t - started.data["at"]) * 1000  # what the engine's clock had played by then
    assert 0 < heard_ms <= due_ms - 250, "only what the line confirmed counts as heard"
    truncate = next(e for e in server.received if e["type"] == "conversation.item.truncate")
    assert truncate["audio_end_ms"] == heard_ms
    assert cancelled.data["heard_text"] == " ".join(
        answer.split()[: len(cancelled.data["heard_text"].split())]
    )
    assert not server.problems
