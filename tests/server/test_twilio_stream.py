"""``/twilio/stream`` on the real server with its store: a phone call on the books, carried by a Twilio
Media Stream from a simulated caller, with fast deterministic engines."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from parley.engine.agent import AgentConfig
from parley.engine.events import now
from parley.engine.session import EngineStack
from parley.engine.transport import ControlUnavailable
from parley.platform.runtime import Platform
from parley.platform.schemas import CallDetail
from parley.providers.llm.scripted import ScriptRule
from parley.server.live import LiveSession
from parley.twilio_sim.caller import SimulatedCaller, new_sid
from tests.engine.harness import agent, speech
from tests.server.conftest import Served, fast_engines, serving

TOKEN = "test-auth-token-0123456789abcdef"
GREETING = "Hello, this is Parley."


def phone_agent(**overrides: Any) -> AgentConfig:
    overrides.setdefault("first_message", GREETING)
    return agent(name="phone-desk", **overrides)


@contextlib.asynccontextmanager
async def phone_server(engines: EngineStack, tmp_path: Path, **overrides: Any) -> AsyncIterator[Served]:
    values: dict[str, Any] = {"twilio_auth_token": TOKEN, "data_dir": tmp_path}
    values.update(overrides)
    async with serving(engines, agents=[phone_agent()], platform=True, **values) as served:
        yield served


def platform_of(served: Served) -> Platform:
    platform = served.runtime.platform
    assert platform is not None
    return platform


def stream_url(served: Served) -> str:
    return served.base.replace("http://", "ws://") + "/twilio/stream"


async def book_call(
    served: Served,
    *,
    transport: str = "twilio",
    call_sid: str | None = None,
    agent_config: AgentConfig | None = None,
) -> tuple[str, str]:
    """A call as the voice webhook files it: inbound, on Twilio, known by its CallSid."""
    platform = platform_of(served)
    stored, _ = await platform.agents.ensure(platform.default_org_id, agent_config or phone_agent())
    sid = call_sid or new_sid("CA")
    call, _ = await platform.calls.create(
        platform.default_org_id,
        direction="inbound",
        transport=transport,
        agent_ref=stored.id,
        from_number="+15550100001",
        to_number="+15550100002",
        provider_call_id=sid,
    )
    return call.id, sid


def caller_for(served: Served, call_id: str, call_sid: str, **options: Any) -> SimulatedCaller:
    options.setdefault("auth_token", TOKEN)
    return SimulatedCaller(
        stream_url(served), call_sid=call_sid, custom_parameters={"call_id": call_id}, **options
    )


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110  (polling what a simulated ear heard)
            await asyncio.sleep(0.02)


async def heard_reply(caller: SimulatedCaller, since: float, within_s: float = 10.0) -> tuple[float, float]:
    """Wait until the caller heard the agent say something after ``since``, and it stopped."""

    def finished() -> bool:
        span = caller.heard_voice(since, now())
        return span is not None and span[1] < now() - 0.3

    await until(finished, within_s)
    span = caller.heard_voice(since, now())
    assert span is not None
    return span


async def ended_call(served: Served, call_id: str) -> CallDetail:
    platform = platform_of(served)
    for _ in range(100):  # the persister files the end just after hang-up
        detail = await platform.calls.detail(platform.default_org_id, call_id)
        if detail.ended_at is not None and detail.transcript:
            return detail
        await asyncio.sleep(0.1)
    raise AssertionError(f"call {call_id} did not end on the books: {detail.status}")


def live_session(served: Served) -> LiveSession:
    (live,) = served.runtime.registry.sessions()
    return live


async def test_a_phone_call_runs_over_the_media_stream(tmp_path: Path) -> None:
    engines = fast_engines(
        ["What is the capital of France?"], [ScriptRule.say("capital", "Paris, of course.")]
    )
    async with phone_server(engines, tmp_path) as served:
        call_id, call_sid = await book_call(served)
        async with caller_for(served, call_id, call_sid) as caller:
            assert caller.started_at is not None
            await heard_reply(caller, caller.started_at)  # the greeting
            await caller.say(speech(1.0).pcm, 16000)
            await heard_reply(caller, now())  # the answer
            assert caller.marks_echoed >= 2 and caller.protocol_errors == 0
        assert caller.ended_by == "caller"
        detail = await ended_call(served, call_id)
    said = [(t.speaker, t.text) for t in detail.transcript]
    assert said == [
        ("agent", GREETING),
        ("user", "What is the capital of France?"),
        ("agent", "Paris, of course."),
    ]
    assert detail.transport == "twilio" and detail.provider_call_id == call_sid
    assert detail.end_reason == "caller_hung_up"


async def test_keypad_digits_reach_the_agent(tmp_path: Path) -> None:
    engines = fast_engines([], [ScriptRule.say("[keypad] 4 2 #", "Extension forty two.")])
    async with phone_server(engines, tmp_path) as served:
        call_id, call_sid = await book_call(served)
        async with caller_for(served, call_id, call_sid) as caller:
            assert caller.started_at is not None
            await heard_reply(caller, caller.started_at)
            for digit in "42#":
                await caller.press(digit)
            await heard_reply(caller, now())
        detail = await ended_call(served, call_id)
    assert ("user", "[keypad] 4 2 #") in [(t.speaker, t.text) for t in detail.transcript]
    assert [e.data["digit"] for e in detail.events if e.type == "user.dtmf"] == ["4", "2", "#"]


async def test_an_agent_side_end_hangs_up_after_the_last_words_were_heard(tmp_path: Path) -> None:
    engines = fast_engines([], [])
    async with phone_server(engines, tmp_path) as served:
        call_id, call_sid = await book_call(served)
        async with caller_for(served, call_id, call_sid) as caller:
            assert caller.started_at is not None
            await heard_reply(caller, caller.started_at)
            said_at = now()
            live_session(served).engine.say("Please leave a message. Goodbye.", end_after="voicemail_left")
            await caller.wait_closed(10.0)
            assert caller.ended_by == "server"
            span = caller.heard_voice(said_at)
            assert span is not None, "the goodbye was heard before the line went down"
            assert caller.marks_cleared == 0 and caller.clears_received == 0
        detail = await ended_call(served, call_id)
    assert detail.end_reason == "voicemail_left"
    assert detail.transcript[-1].text == "Please leave a message. Goodbye."


@pytest.mark.parametrize(
    "problem", ["unknown call", "another CallSid", "not a phone call", "ended call", "no call_id"]
)
async def test_a_stream_for_a_call_it_cannot_carry_is_closed_with_a_log_line(
    tmp_path: Path, problem: str
) -> None:
    async with phone_server(fast_engines([], []), tmp_path) as served:
        call_id, call_sid = await book_call(
            served, transport="websocket" if problem == "not a phone call" else "twilio"
        )
        if problem == "ended call":
            await platform_of(served).calls.set_status(call_id, "canceled", reason="test")
        parameters = {"call_id": call_id}
        if problem == "unknown call":
            parameters = {"call_id": "call_doesnotexist"}
        elif problem == "no call_id":
            parameters = {}
        elif problem == "another CallSid":
            call_sid = new_sid("CA")
        with capture_logs() as logs:
            caller = SimulatedCaller(
                stream_url(served), auth_token=TOKEN, call_sid=call_sid, custom_parameters=parameters
            )
            async with caller:
                await caller.wait_closed(10.0)
        assert caller.ended_by == "server" and caller.media_received == 0
        refusals = [entry for entry in logs if entry["event"] == "twilio.stream_refused"]
        assert len(refusals) == 1 and refusals[0]["call_sid"] == call_sid, logs
        assert len(served.runtime.registry) == 0


async def test_one_call_takes_one_stream(tmp_path: Path) -> None:
    async with phone_server(fast_engines([], []), tmp_path) as served:
        call_id, call_sid = await book_call(served)
        async with caller_for(served, call_id, call_sid) as first:
            assert first.started_at is not None
            await heard_reply(first, first.started_at)
            async with caller_for(served, call_id, call_sid) as second:
                await second.wait_closed(10.0)
            assert second.ended_by == "server" and second.media_received == 0
            assert not first.closed


async def test_barging_in_clears_twilios_buffer_and_keeps_what_the_caller_heard(tmp_path: Path) -> None:
    long_greeting = (
        "Hello, this is Parley. I can book tables, move bookings and answer questions about the menu."
    )
    engines = fast_engines(["Stop, I want a table."], [ScriptRule.say("table", "Sure, for how many?")])
    async with serving(
        engines,
        agents=[phone_agent(first_message=long_greeting)],
        platform=True,
        twilio_auth_token=TOKEN,
        data_dir=tmp_path,
    ) as served:
        call_id, call_sid = await book_call(served, agent_config=phone_agent(first_message=long_greeting))
        async with caller_for(served, call_id, call_sid) as caller:
            assert caller.started_at is not None
            await until(lambda: caller.heard_voice(caller.started_at or 0.0, now()) is not None)
            await asyncio.sleep(0.5)  # part of the greeting has been heard
            await caller.say(speech(1.0).pcm, 16000)
            await heard_reply(caller, now())
            assert caller.clears_received >= 1
        detail = await ended_call(served, call_id)
    greeting = detail.transcript[0]
    assert greeting.speaker == "agent" and greeting.interrupted
    assert greeting.text and long_greeting.startswith(greeting.text) and greeting.text != long_greeting
    assert ("agent", "Sure, for how many?") in [(t.speaker, t.text) for t in detail.transcript]


class FakeRest:
    """Twilio's REST API as the transfer sees it."""

    def __init__(self) -> None:
        self.transfers: list[tuple[str, str]] = []

    async def transfer(self, sid: str, target: str) -> None:
        self.transfers.append((sid, target))


async def test_a_transfer_asks_twilio_to_send_the_call_on(tmp_path: Path) -> None:
    async with phone_server(fast_engines([], []), tmp_path) as served:
        call_id, call_sid = await book_call(served)
        async with caller_for(served, call_id, call_sid) as caller:
            assert caller.started_at is not None
            await heard_reply(caller, caller.started_at)
            controls = live_session(served).controls
            with pytest.raises(ControlUnavailable):  # no REST client: the line cannot do it
                await controls.transfer("+15550100003")
            rest = FakeRest()
            served.server.config.app.state.twilio_rest = rest
            await controls.transfer("+15550100003")
            assert rest.transfers == [(call_sid, "+15550100003")]
            await caller.hang_up()  # Twilio ends the stream as it dials the target
        detail = await ended_call(served, call_id)
    assert detail.end_reason == "transferred"
