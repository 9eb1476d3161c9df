"""A server-like process for the SIGKILL test: one call through the platform, never hung up.

Usage: python -m tests.timeline.sigkill_worker DATA_DIR DATABASE_URL
Prints ``call <id>``, then ``<event type> <text>`` for each final transcript and finished reply (after
the event has gone through the timeline), and keeps the call open until it is killed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from parley.config import Settings
from parley.engine.events import Event, EventType
from parley.engine.session import Session, SessionOptions
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate
from parley.providers.llm.scripted import ScriptRule
from parley.simulation import Loudspeaker, Microphone
from parley.stack import build_tools
from tests.engine.harness import RATE, agent, speech, stack
from tests.platform.live import Tap, wait_quiet

LINES = ["What time do you open?", "And on Sundays?", "Tell me everything about your opening hours."]
RULES = [ScriptRule.say("open?", "We open at nine."), ScriptRule.say("Sundays", "Sundays we are closed.")]


class Announcer:
    """The session's timeline: the platform's bus, then a line on stdout for the test to act on."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def emit(self, event: Event) -> None:
        self.platform.bus.emit(event)
        if event.type in (EventType.TRANSCRIPT_FINAL, EventType.AGENT_REPLY_DONE):
            print(event.type, event.data.get("text", ""), flush=True)


async def main(data_dir: Path, database_url: str) -> None:
    platform = await Platform.open(Settings(data_dir=data_dir, database_url=database_url))
    await platform.agents.create(platform.default_org_id, AgentCreate(name="front-desk", config=agent()))
    live = await platform.live_call(agent_ref="front-desk")
    print("call", live.call_id, flush=True)
    session = Session(
        live.agent,
        stack(LINES, RULES, ms_per_char=15),
        live.output(Loudspeaker(RATE)),
        Announcer(platform),
        build_tools(live.agent),
        SessionOptions(interim_interval_s=None),
        session_id=live.session_id,
    )
    runner = asyncio.create_task(session.run())
    async with Microphone(Tap(live, session), RATE) as mic:  # type: ignore[arg-type]
        await mic.say(speech(0.8).pcm, RATE)
        await wait_quiet(session)
        await mic.say(speech(0.8).pcm, RATE)
        await wait_quiet(session)
        print("speaking", flush=True)
        await mic.say(speech(30.0).pcm, RATE)  # a long third turn: killed in the middle of it
    await runner


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
