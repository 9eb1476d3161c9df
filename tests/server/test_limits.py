"""Session limits and the server's lifecycle: capacity, kill switch, timeouts, graceful shutdown."""

from __future__ import annotations

import asyncio

from parley.providers.llm.scripted import ScriptRule
from tests.engine.harness import agent, speech
from tests.server.conftest import fast_engines, serving, talking

LONG_ANSWER = "Paris is the capital of France, and it has many museums, parks, bridges and bakeries."


async def test_the_session_after_the_limit_is_refused_clearly() -> None:
    async with serving(fast_engines([], []), max_concurrent_sessions=2) as served:
        clients = [await served.client() for _ in range(3)]
        assert (await clients[0].start())["type"] == "session.started"
        assert (await clients[1].start())["type"] == "session.started"
        refused = await clients[2].start()
        assert refused["code"] == "capacity" and refused["fatal"]
        assert "2 concurrent sessions" in refused["message"]
        await asyncio.sleep(0.2)
        assert clients[2].closed and clients[2].ws.close_code == 1013
        await clients[0].send({"type": "end"})
        await clients[0].wait_for("session.ended", 5)
        retry = await served.client()
        assert (await retry.start())["type"] == "session.started", "a freed slot is available again"
        for client in (clients[1], retry):
            await client.close()


async def test_realtime_can_be_switched_off() -> None:
    async with serving(fast_engines([], []), realtime_enabled=False) as served:
        client = await served.client()
        refused = await client.start()
        assert refused["code"] == "realtime_disabled" and "PARLEY_REALTIME_ENABLED" in refused["message"]
        assert (await served.get("/v1/realtime/config")).json()["enabled"] is False


async def test_an_idle_session_ends_cleanly_and_tells_the_client() -> None:
    async with serving(fast_engines([], []), session_idle_timeout_s=0.6) as served:
        client = await served.client()
        await client.start()
        async with talking(client):  # a microphone streaming silence is not activity
            ended = await client.wait_for("session.ended", 5)
        assert ended["reason"] == "idle_timeout"
        await asyncio.sleep(0.2)
        assert client.closed and client.ws.close_code == 1000
        assert len(served.runtime.registry) == 0


async def test_activity_keeps_a_session_alive_until_its_maximum_duration() -> None:
    engines = fast_engines(["hello"] * 5, [ScriptRule.say("hello", "Hi.")])
    async with serving(engines, session_idle_timeout_s=1.0, max_session_duration_s=3.0) as served:
        client = await served.client()
        await client.start()
        async with talking(client) as mic:
            for _ in range(2):
                await mic.say(speech(0.4).pcm)
                await asyncio.sleep(0.5)
            assert not client.closed, "speech kept the session alive past the idle timeout"
            ended = await client.wait_for("session.ended", 5)
        assert ended["reason"] == "max_duration"


async def test_graceful_shutdown_lets_calls_finish_then_ends_them() -> None:
    engines = fast_engines([], [ScriptRule.say("Paris", LONG_ANSWER)], ms_per_char=60)
    async with serving(engines, shutdown_grace_s=1.0) as served:
        client = await served.client()
        await client.start()
        await client.send({"type": "text", "text": "Tell me about Paris."})
        await client.wait_for("agent.audio", 5, status="started")
        draining = asyncio.create_task(served.server.begin_shutdown())
        notice = await client.wait_for("server.shutdown", 2)
        assert notice["grace_s"] == 1.0
        assert (await served.get("/readyz")).status_code == 503
        newcomer = await served.client()
        refused = await newcomer.start()
        assert refused["code"] == "shutting_down" and refused["fatal"]
        ended = await client.wait_for("session.ended", 5)
        assert ended["reason"] == "server_shutdown"
        cancelled = client.of_type("agent.cancelled")
        assert cancelled and cancelled[0]["reason"] == "session_ended", "the answer was cut cleanly"
        await asyncio.wait_for(draining, 10)
        await client.wait_closed(2)
        assert client.ws.close_code == 1000


async def test_a_call_that_finishes_within_the_grace_period_is_not_cut() -> None:
    engines = fast_engines([], [ScriptRule.say("hi", "Hello there.")])
    async with serving(engines, shutdown_grace_s=5.0) as served:
        client = await served.client()
        await client.start()
        await client.send({"type": "text", "text": "hi"})
        await client.wait_for("agent.audio", 5, status="started")
        draining = asyncio.create_task(served.server.begin_shutdown())
        await client.wait_for("agent.audio", 5, status="stopped")
        await client.send({"type": "end"})
        ended = await client.wait_for("session.ended", 5)
        assert ended["reason"] == "client_ended"
        await asyncio.wait_for(draining, 2)


async def test_a_call_the_agent_hangs_up_tells_the_client_why() -> None:
    """The call's record said agent_ended_call while the client was told a bare "ended"."""
    engines = fast_engines([], [ScriptRule.call("bye", "end_call", {}), ScriptRule.say("", "Goodbye!")])
    hangs_up = agent(name="assistant", tools=[{"name": "end_call"}])
    async with serving(engines, agents=[hangs_up]) as served:
        client = await served.client()
        await client.start()
        await client.send({"type": "text", "text": "Thanks, bye"})
        ended = await client.wait_for("session.ended", 10)
        assert ended["reason"] == "agent_ended_call"
