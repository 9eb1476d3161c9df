"""The ElevenLabs Conversational AI adapter on the wire, against a local server that speaks the documented
protocol (``local_convai_server.py`` says where each message shape comes from)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from parley.providers.errors import ProviderUnavailable
from parley.providers.s2s.base import (
    AgentAudio,
    AgentTranscript,
    EngineError,
    ResponseDone,
    S2SEvent,
    S2SSetup,
    SpeechStarted,
    SpeechStopped,
    ToolCallRequest,
    UserTranscript,
)
from parley.providers.s2s.elevenlabs_convai import ElevenLabsConvaiConnection, ElevenLabsConvaiEngine
from tests.providers.elevenlabs.local_convai_server import LocalConvai, Rule

KEY = "xi-local-test"
AGENT = "agent_local_0001"
RATE = 16000


def engine(
    server: LocalConvai, key: str | None = KEY, agent: str = AGENT, **options: object
) -> ElevenLabsConvaiEngine:
    return ElevenLabsConvaiEngine(agent, api_key=key, base_url=server.url, timeout_s=5.0, **options)  # type: ignore[arg-type]


def utterance(seconds: float = 0.6) -> np.ndarray:
    """A tone the server hears as speech, then the silence that ends the turn."""
    t = np.arange(int(seconds * RATE)) / RATE
    voiced = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16)
    return np.concatenate([np.zeros(RATE // 10, np.int16), voiced, np.zeros(int(0.5 * RATE), np.int16)])


async def speak(conn: ElevenLabsConvaiConnection, pcm: np.ndarray) -> None:
    for offset in range(0, len(pcm), 320):
        await conn.send_audio(pcm[offset : offset + 320])


async def until(events: AsyncIterator[S2SEvent], kind: type, within_s: float = 5.0) -> list[S2SEvent]:
    """Events up to and including the first of ``kind``."""
    seen: list[S2SEvent] = []
    async with asyncio.timeout(within_s):
        async for event in events:
            seen.append(event)
            if isinstance(event, kind):
                return seen
    raise AssertionError(f"the conversation ended before a {kind.__name__}: {seen}")


def audio_s(events: list[S2SEvent]) -> float:
    return sum(len(e.pcm) for e in events if isinstance(e, AgentAudio)) / RATE


async def test_elevenlabs_convai_initiation_overrides_and_first_message() -> None:
    setup = S2SSetup(
        "You are Ada, a dentist's receptionist.", first_message="Hello, Ada here.", language="de"
    )
    async with LocalConvai([], []) as server:
        conn = await engine(
            server, voice_id="21m00Tcm4TlvDq8ikWAM", dynamic_variables={"name": "Ann"}
        ).connect(setup)
        try:
            events = conn.events()
            greeting = await until(events, ResponseDone)
        finally:
            await conn.aclose()
    assert server.signed == [{"agent_id": AGENT}], "signed with the key, for this agent"
    initiation = server.initiations[0]
    assert initiation["conversation_config_override"] == {
        "agent": {
            "prompt": {"prompt": "You are Ada, a dentist's receptionist."},
            "first_message": "Hello, Ada here.",
            "language": "de",
        },
        "tts": {"voice_id": "21m00Tcm4TlvDq8ikWAM"},
    }
    assert initiation["dynamic_variables"] == {"name": "Ann"}
    assert conn.speaks_first_message and conn.output_format == "pcm_16000"
    words = [e.text for e in greeting if isinstance(e, AgentTranscript)]
    assert "".join(words) == "Hello, Ada here." and len(words) > 3, "the words as the audio carries them"
    done = greeting[-1]
    assert isinstance(done, ResponseDone) and done.status == "completed"
    assert {e.response_id for e in greeting if isinstance(e, AgentAudio | AgentTranscript)} == {
        done.response_id
    }
    assert abs(audio_s(greeting) - 3 * 0.25) < 0.01, "the whole greeting, three words of 250 ms"
    assert not server.problems


async def test_elevenlabs_convai_spoken_turn_and_client_tool_round_trip() -> None:
    oslo = {"city": "Oslo"}
    rules = [Rule("weather", "Let me look.", tool="weather", arguments=oslo, after_tool="It is {output}.")]
    async with LocalConvai(["What's the weather in Oslo?"], rules) as server:
        conn = await engine(server).connect(S2SSetup("Be brief."))
        try:
            events = conn.events()
            await speak(conn, utterance())
            heard = await until(events, ToolCallRequest)
            call = heard[-1]
            assert isinstance(call, ToolCallRequest)
            assert call.name == "weather" and call.arguments == '{"city": "Oslo"}'
            ended = await until(events, ResponseDone)
            await conn.tool_result(call.call_id, "sunny")
            rest = await until(events, ResponseDone)
        finally:
            await conn.aclose()
    kinds = [type(e) for e in heard]
    assert kinds.index(SpeechStarted) < kinds.index(SpeechStopped) < kinds.index(UserTranscript)
    transcript = next(e for e in heard if isinstance(e, UserTranscript))
    assert transcript.text == "What's the weather in Oslo?"
    # The call ends its response (as a function call ends an OpenAI response) once the words before it
    # are all received; the answer after it is the next response.
    assert ended[-1] == ResponseDone(call.response_id, "completed")
    assert {e.response_id for e in ended if isinstance(e, AgentAudio | AgentTranscript)} <= {call.response_id}
    texts = "".join(e.text for e in heard + ended + rest if isinstance(e, AgentTranscript))
    assert texts == "Let me look. It is sunny."
    after = {e.response_id for e in rest if isinstance(e, AgentAudio | AgentTranscript)}
    assert after == {f"{call.response_id}.1"} and rest[-1] == ResponseDone(
        f"{call.response_id}.1", "completed"
    )
    assert abs(audio_s(heard + ended + rest) - 6 * 0.25) < 0.01, "every word's audio, none lost at the call"
    result = server.of_type("client_tool_result")[0]
    assert result == {
        "type": "client_tool_result",
        "tool_call_id": call.call_id,
        "result": "sunny",
        "is_error": False,
    }
    assert ("tool", "sunny") in server.transcript
    assert not server.problems


async def test_elevenlabs_convai_answers_every_ping_with_its_event_id() -> None:
    async with LocalConvai([], [], ping_every_s=0.05) as server:
        conn = await engine(server).connect(S2SSetup("Be brief."))
        try:
            events = conn.events()
            with pytest.raises(TimeoutError):
                await until(events, UserTranscript, within_s=0.5)  # nothing said: only pings come
        finally:
            await conn.aclose()
        await server.closed.wait()
    assert len(server.pings) >= 5
    assert server.pongs == server.pings[: len(server.pongs)] and len(server.pongs) >= len(server.pings) - 1
    assert not server.problems, "no pong for a ping never sent, none left unanswered"


async def test_elevenlabs_convai_wrong_key_or_agent_is_unavailable() -> None:
    async with LocalConvai([], []) as server:
        with pytest.raises(ProviderUnavailable) as refused:
            await engine(server, key="xi-wrong").connect(S2SSetup("Be brief."))
        assert refused.value.status == 401 and "refused the key" in str(refused.value)
        with pytest.raises(ProviderUnavailable) as unknown:
            await engine(server, agent="agent_someone_else").connect(S2SSetup("Be brief."))
        assert unknown.value.status == 404
        with pytest.raises(ProviderUnavailable) as unsigned:
            await engine(server, key=None).connect(S2SSetup("Be brief."))  # a private agent needs signing
        assert unsigned.value.status == 403
        url = server.url
    assert server.refused == [401, 404, 403] and server.connections == 0
    with pytest.raises(ProviderUnavailable):
        await ElevenLabsConvaiEngine(AGENT, api_key=KEY, base_url=url, timeout_s=2.0).connect(S2SSetup("Hi."))


async def test_elevenlabs_convai_override_the_agent_does_not_allow_is_unavailable() -> None:
    allowed = frozenset({"agent.prompt.prompt"})
    async with LocalConvai([], [], allowed_overrides=allowed) as server:
        with pytest.raises(ProviderUnavailable) as closed:
            await engine(server).connect(S2SSetup("Be brief.", language="es"))
        conn = await engine(server, overrides=frozenset({"prompt"})).connect(
            S2SSetup("Be brief.", language="es")
        )
        await conn.aclose()
    assert closed.value.status == 1008
    assert "Override for field 'language' is not allowed by config." in str(closed.value)
    assert server.initiations[1]["conversation_config_override"] == {
        "agent": {"prompt": {"prompt": "Be brief."}}
    }


async def test_elevenlabs_convai_public_agent_and_mulaw_audio_both_ways() -> None:
    async with LocalConvai(
        ["Hello?"],
        [Rule("Hello", "Hi there, friend.")],
        requires_auth=False,
        output_format="ulaw_8000",
        input_format="ulaw_8000",
        alignment=False,
    ) as server:
        conn = await engine(server, key=None, end_of_reply_s=0.3).connect(S2SSetup("Be brief."))
        try:
            events = conn.events()
            await speak(conn, utterance(0.5))
            answer = await until(events, ResponseDone)
        finally:
            await conn.aclose()
    assert server.signed == [] and server.connections == 1
    assert conn.input_format == conn.output_format == "ulaw_8000"
    assert abs(server.audio_ms - 1100) < 30, "the caller's 16 kHz audio arrived as 8 kHz μ-law, all of it"
    assert next(e for e in answer if isinstance(e, UserTranscript)).text == "Hello?"
    assert abs(audio_s(answer) - 0.75) < 0.02, "μ-law 8 kHz became 16 kHz PCM, every word of it"
    pcm = np.concatenate([e.pcm for e in answer if isinstance(e, AgentAudio)])
    assert np.sqrt(np.mean((pcm / 32768.0) ** 2)) > 0.1, "a tone, not noise or silence"
    assert not server.problems


async def test_elevenlabs_convai_reply_without_alignment_ends_after_a_quiet_spell() -> None:
    async with LocalConvai([], [], first_message="Good morning.", alignment=False, speed=20.0) as server:
        conn = await engine(server, end_of_reply_s=0.4).connect(S2SSetup("Be brief."))
        try:
            events = conn.events()
            seen = await until(events, ResponseDone)
        finally:
            await conn.aclose()
    assert abs(audio_s(seen) - 0.5) < 0.01
    assert isinstance(seen[-1], ResponseDone) and seen[-1].status == "completed"


async def test_elevenlabs_convai_agent_response_complete_ends_the_reply_at_once() -> None:
    greeting = {"first_message": "Good morning.", "alignment": False}
    async with LocalConvai([], [], send_complete=True, **greeting) as server:  # type: ignore[arg-type]
        conn = await engine(server, end_of_reply_s=10.0).connect(S2SSetup("Be brief."))
        try:
            seen = await until(conn.events(), ResponseDone, within_s=2.0)  # long before 10 s of quiet
        finally:
            await conn.aclose()
    assert abs(audio_s(seen) - 0.5) < 0.01 and seen[-1] == ResponseDone("el1", "completed")


async def test_elevenlabs_convai_failure_mid_call_is_reported_then_unavailable() -> None:
    async with LocalConvai(["Break, please."], [], fail_on="Break") as server:
        conn = await engine(server).connect(S2SSetup("Be brief."))
        seen: list[S2SEvent] = []
        try:
            events = conn.events()
            await speak(conn, utterance())
            with pytest.raises(ProviderUnavailable) as lost:
                async with asyncio.timeout(5):
                    async for event in events:
                        seen.append(event)
        finally:
            await conn.aclose()
    error = next(e for e in seen if isinstance(e, EngineError))
    assert error.code == "llm_error" and error.message == "The language model failed to respond"
    assert lost.value.status == 1002
