"""The OpenAI Realtime adapter on the wire, against a local server that speaks the documented protocol."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import numpy as np
import pytest

from parley.providers.errors import ProviderUnavailable
from parley.providers.llm.base import ToolSpec
from parley.providers.s2s.base import (
    AgentAudio,
    AgentTranscript,
    ResponseDone,
    S2SEvent,
    S2SSetup,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequest,
    UserTranscript,
)
from parley.providers.s2s.openai_realtime import OpenAIRealtimeConnection, OpenAIRealtimeEngine
from tests.providers.realtime.local_server import LocalRealtime, Rule

KEY = "sk-local-test"
WEATHER = ToolSpec(
    "weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def engine(url: str, key: str | None = KEY, **options: object) -> OpenAIRealtimeEngine:
    return OpenAIRealtimeEngine(base_url=url, api_key=key, silence_duration_ms=200, timeout_s=5.0, **options)  # type: ignore[arg-type]


def utterance(seconds: float = 0.6) -> np.ndarray:
    """A tone the server's VAD hears as speech, then the silence that ends the turn."""
    t = np.arange(int(seconds * 24000)) / 24000
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    return np.concatenate([voiced, np.zeros(int(0.4 * 24000), np.int16)])


async def speak(conn: OpenAIRealtimeConnection, pcm: np.ndarray) -> None:
    for offset in range(0, len(pcm), 480):
        await conn.send_audio(pcm[offset : offset + 480])


async def until(events: AsyncIterator[S2SEvent], kind: type, within_s: float = 5.0) -> list[S2SEvent]:
    """Events up to and including the first of ``kind``."""
    seen: list[S2SEvent] = []
    async with asyncio.timeout(within_s):
        async for event in events:
            seen.append(event)
            if isinstance(event, kind):
                return seen
    raise AssertionError(f"the connection ended before a {kind.__name__}: {seen}")


async def test_realtime_refuses_a_wrong_key_as_unavailable() -> None:
    async with LocalRealtime([], []) as server:
        with pytest.raises(ProviderUnavailable):
            await engine(server.url, key="sk-wrong").connect(S2SSetup("Be brief."))
        with pytest.raises(ProviderUnavailable):
            await engine(server.url, key=None).connect(S2SSetup("Be brief."))
    assert server.refused == [401]


async def test_realtime_unreachable_is_unavailable() -> None:
    async with LocalRealtime([], []) as server:
        url = server.url
    with pytest.raises(ProviderUnavailable):
        await engine(url).connect(S2SSetup("Be brief."))


async def test_realtime_session_setup_audio_turn_and_usage() -> None:
    rules = [Rule("capital", "Paris, of course.")]
    async with LocalRealtime(["What is the capital of France?"], rules) as server:
        conn = await engine(server.url, voice="cedar").connect(
            S2SSetup("You are brief.", (WEATHER,), language="fr", session_id="s1")
        )
        events = conn.events()
        await speak(conn, utterance())
        seen = await until(events, ResponseDone)
        await conn.aclose()

    assert server.sent_types()[0] == "session.update", "the session is configured before any audio"
    session = server.received[0]["session"]
    assert session["type"] == "realtime" and session["output_modalities"] == ["audio"]
    assert session["instructions"].startswith("You are brief.")
    assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "cedar"}
    assert session["audio"]["input"]["transcription"]["language"] == "fr"
    detection = session["audio"]["input"]["turn_detection"]
    assert (
        detection["type"] == "server_vad" and detection["create_response"] and detection["interrupt_response"]
    )
    assert session["tools"] == [
        {
            "type": "function",
            "name": "weather",
            "description": WEATHER.description,
            "parameters": WEATHER.parameters,
        }
    ]
    kinds = [type(e) for e in seen]
    assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(UserTranscript)
    assert [e.text for e in seen if isinstance(e, UserTranscript)] == ["What is the capital of France?"]
    words = "".join(e.text for e in seen if isinstance(e, AgentTranscript))
    assert words == "Paris, of course."
    audio = np.concatenate([e.pcm for e in seen if isinstance(e, AgentAudio)])
    assert abs(len(audio) / 24000 - 3 * 0.25) < 0.01 and np.abs(audio).max() > 5000
    done = seen[-1]
    assert isinstance(done, ResponseDone) and done.status == "completed"
    assert done.usage is not None and done.usage.output_tokens > 0 and done.usage.input_tokens > 0
    assert done.usage.output_audio_tokens > 0
    assert not server.problems


async def test_realtime_function_call_output_then_one_response() -> None:
    rules = [
        Rule("weather", tool="weather", arguments={"city": "Oslo"}, after_tool="It is {output} in Oslo.")
    ]
    async with LocalRealtime(["What's the weather in Oslo?"], rules) as server:
        conn = await engine(server.url).connect(S2SSetup("Be brief.", (WEATHER,)))
        events = conn.events()
        await speak(conn, utterance())
        seen = await until(events, ResponseDone)
        call = next(e for e in seen if isinstance(e, ToolCallRequest))
        assert call.name == "weather" and json.loads(call.arguments) == {"city": "Oslo"}
        await conn.tool_result(call.call_id, '"sunny"')
        answer = await until(events, ResponseDone)
        await conn.aclose()

    assert "".join(e.text for e in answer if isinstance(e, AgentTranscript)) == 'It is "sunny" in Oslo.'
    sent = server.sent_types()
    output = next(
        i for i, e in enumerate(server.received) if e.get("item", {}).get("type") == "function_call_output"
    )
    assert server.received[output]["item"]["call_id"] == call.call_id
    assert sent[output + 1 :].count("response.create") == 1, "one response.create, after the output"
    assert sent.index("response.create") > output
    assert not server.problems


async def test_realtime_interrupt_cancels_and_truncates_to_what_was_heard() -> None:
    long_answer = "one two three four five six seven eight nine ten eleven twelve"
    async with LocalRealtime(["Count for me."], [Rule("Count", long_answer)], speed=1.0) as server:
        conn = await engine(server.url).connect(S2SSetup("Be brief."))
        events = conn.events()
        await speak(conn, utterance())
        received, item_id = 0, ""
        while received < 0.5 * 24000:  # half a second of the answer has arrived
            audio = (await until(events, AgentAudio))[-1]
            assert isinstance(audio, AgentAudio)
            received, item_id = received + len(audio.pcm), audio.item_id
        await conn.interrupt(item_id, 400)  # the caller heard 400 ms of it
        rest = await until(events, ResponseDone)
        async with asyncio.timeout(5):
            await server.truncated.wait()
        await conn.aclose()

    assert isinstance(rest[-1], ResponseDone) and rest[-1].status == "cancelled"
    sent = server.sent_types()
    assert sent.index("response.cancel") < sent.index("conversation.item.truncate")
    truncate = server.received[sent.index("conversation.item.truncate")]
    assert (
        truncate["item_id"] == item_id and truncate["audio_end_ms"] == 400 and truncate["content_index"] == 0
    )
    item = next(i for i in server.items if i["id"] == item_id)
    assert item["truncated_ms"] == 400 and "transcript" not in item["content"][0], (
        "the service forgot the rest"
    )
    assert not server.problems
