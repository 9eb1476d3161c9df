"""The built-in ``send_dtmf`` on a real phone call: the model presses a key, the far end hears its tone."""

from __future__ import annotations

from pathlib import Path

from parley.engine.events import now
from parley.providers.llm.scripted import ScriptRule
from parley.twilio_sim.caller import SAMPLE_RATE
from tests.engine.harness import speech
from tests.server.conftest import fast_engines
from tests.server.test_twilio_stream import (
    book_call,
    caller_for,
    ended_call,
    heard_reply,
    phone_agent,
    phone_server,
)
from tests.transports.test_twilio_dtmf import keys_heard


async def test_the_agent_presses_a_key_on_an_automated_menu(tmp_path: Path) -> None:
    rules = [
        ScriptRule.after_tool("sent", ""),
        ScriptRule.call("sales", "send_dtmf", {"digits": "1"}),
    ]
    engines = fast_engines(["Press one for sales."], rules)
    menu_agent = phone_agent(tools=[{"name": "send_dtmf"}])
    async with phone_server(engines, tmp_path) as served:
        call_id, call_sid = await book_call(served, agent_config=menu_agent)
        async with caller_for(served, call_id, call_sid) as caller:
            assert caller.started_at is not None
            await heard_reply(caller, caller.started_at)  # the greeting
            await caller.say(speech(1.0).pcm, 16000)
            asked = now()
            await heard_reply(caller, asked)
            assert keys_heard(caller.heard_audio(asked, now()), SAMPLE_RATE) == "1"
        detail = await ended_call(served, call_id)
    results = [e.data for e in detail.events if e.type == "tool.result"]
    assert [(r["tool"], r["ok"]) for r in results] == [("send_dtmf", True)]
