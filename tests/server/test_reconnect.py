"""A dropped socket comes back with its token and the same conversation, hearing each frame once."""

from __future__ import annotations

import asyncio

from parley.providers.llm.scripted import ScriptedModel, ScriptRule
from parley.providers.tts.tone import ToneSynthesizer
from parley.transports.ws_client import LiveClient
from tests.engine.harness import speech
from tests.server.conftest import fast_engines, reconnect, say_until, serving, talking

ANSWER = "Paris is lovely in the spring and the autumn, and the food is good."


async def test_reconnect_continues_the_conversation_without_repeating_or_losing_audio() -> None:
    lines = ["Tell me about Paris.", "And what about Rome?"]
    rules = [ScriptRule.say("Rome", "Rome is in Italy."), ScriptRule.say("Paris", ANSWER)]
    engines = fast_engines(lines, rules)
    async with serving(engines) as served:
        first, _ = await say_until(served, "started", then_s=0.6)
        first.abort()  # the network goes away mid-answer
        await asyncio.sleep(1.0)
        live = served.runtime.registry.get(first.session_id or "")
        assert live is not None and not live.closed and live.connection is None

        second, resumed = await reconnect(served, first)
        assert resumed["type"] == "session.resumed" and resumed["session_id"] == first.session_id
        await second.wait_for("agent.audio", 10, status="stopped")

        seqs = [f.seq for f in first.frames] + [f.seq for f in second.frames]
        assert seqs == list(range(len(seqs))), "every frame arrived exactly once, in order"
        tts = engines.tts
        assert isinstance(tts, ToneSynthesizer)
        heard = sum(len(f.pcm) for f in first.frames + second.frames)
        assert heard == sum(
            tts.samples_for(t)
            for t in ("Paris is lovely in the spring and the autumn,", "and the food is good.")
        )
        replayed = [m["seq"] for m in second.messages if "seq" in m]
        assert replayed and min(replayed) == first.last_event_seq + 1, "missed messages are sent once"
        assert len(replayed) == len(set(replayed))

        async with talking(second) as mic:
            await mic.say(speech(1.0).pcm)
            await second.wait_for("agent.text", 10, text="Rome is in Italy.")
        llm = engines.llm
        assert isinstance(llm, ScriptedModel)
        history = [(m.role, m.content) for m in llm.calls[-1]]
        assert ("user", "Tell me about Paris.") in history
        assert ("assistant", ANSWER) in history, "the context kept the whole answer: it was all heard"
        await second.close()


async def test_resuming_elsewhere_replaces_the_old_connection() -> None:
    async with serving(fast_engines([], [])) as served:
        first = await served.client()
        await first.start()
        second = await served.client()
        assert first.session_id and first.token
        resumed = await second.resume(first.session_id, first.token)
        assert resumed["type"] == "session.resumed"
        replaced = await first.wait_for("error", 5)
        assert replaced["code"] == "replaced" and replaced["fatal"]
        await asyncio.sleep(0.2)
        assert first.closed and first.ws.close_code == 4001
        await second.send({"type": "ping", "id": 7})
        assert (await second.wait_for("pong", 5))["id"] == 7
        await second.close()


async def test_after_the_grace_period_the_session_is_gone_for_good() -> None:
    async with serving(fast_engines([], []), reconnect_grace_s=0.4) as served:
        first = await served.client()
        await first.start()
        assert first.session_id and first.token
        first.abort()
        await asyncio.sleep(1.0)
        assert len(served.runtime.registry) == 0
        metrics = (await served.get("/metrics")).text
        assert 'parley_sessions_total{reason="client_gone"} 1.0' in metrics
        late: LiveClient = await served.client()
        refused = await late.resume(first.session_id, first.token)
        assert refused["type"] == "error" and refused["code"] == "resume_failed"
        assert (await late.start())["type"] == "session.started", "the same connection can start afresh"
        await late.close()


async def test_a_wrong_token_cannot_take_over_a_session() -> None:
    async with serving(fast_engines([], [])) as served:
        owner = await served.client()
        await owner.start()
        thief = await served.client()
        refused = await thief.resume(owner.session_id or "", "guessed-token")
        assert refused["code"] == "resume_failed"
        await owner.send({"type": "ping"})
        assert await owner.wait_for("pong", 5), "the owner is undisturbed"
        await owner.close()
        await thief.close()
