"""A client whose connection dropped mid-answer is told, when it resumes, which reply is still coming
and which of its turns that reply answers (a turn is in ``history`` only once it was answered)."""

from __future__ import annotations

import asyncio

from parley.engine.event_payloads import SessionResumed
from parley.engine.events import EventType
from parley.providers.llm.scripted import ScriptRule
from tests.server.conftest import fast_engines, reconnect, say_until, serving

QUESTION = "Tell me about Paris."
ANSWER = "Paris is lovely in the spring and the autumn, and the food is good."


async def test_resuming_mid_answer_names_the_reply_still_coming_and_the_turn_it_answers() -> None:
    engines = fast_engines([QUESTION], [ScriptRule.say("Paris", ANSWER)])
    async with serving(engines) as served:
        first, started = await say_until(served, "started", then_s=0.3)
        first.abort()  # the network goes away mid-answer
        await asyncio.sleep(1.0)
        live = served.runtime.registry.get(first.session_id or "")
        assert live is not None and live.connection is None

        second, resumed = await reconnect(served, first)
        assert resumed["type"] == "session.resumed"
        assert QUESTION not in [m["text"] for m in resumed["history"]], "not answered yet: not in history"
        assert resumed["answering"] == {"reply_id": started["reply_id"], "text": QUESTION}
        stopped = await second.wait_for("agent.audio", 10, status="stopped")
        assert stopped["reply_id"] == resumed["answering"]["reply_id"], "the named reply is the one that came"

        (event,) = live.timeline.of_type(EventType.SESSION_RESUMED)  # the call's timeline has it too
        on_record = event.payload(SessionResumed)
        assert (on_record.reply_id, on_record.answering) == (started["reply_id"], QUESTION)
        assert on_record.away_ms is not None and on_record.away_ms > 0
        await second.close()


async def test_resuming_between_turns_names_no_reply() -> None:
    engines = fast_engines([QUESTION], [ScriptRule.say("Paris", "Paris is in France.")])
    async with serving(engines) as served:
        first, _ = await say_until(served, "stopped")
        first.abort()
        await asyncio.sleep(0.3)
        second, resumed = await reconnect(served, first)
        assert resumed["answering"] is None
        assert [(m["role"], m["text"]) for m in resumed["history"]] == [
            ("user", QUESTION),
            ("assistant", "Paris is in France."),
        ]
        await second.close()
