"""A server-like process for the SIGKILL test: one call through the platform, never hung up.

Usage: python -m tests.timeline.sigkill_worker DATA_DIR DATABASE_URL [user|agent]
Prints ``call <id> <recording origin>``, then ``<event type> <text>`` for each final transcript and
finished reply (after the event has gone through the timeline), and keeps the call open until it is
killed. In the ``user`` scenario (the default) the user is speaking when the test kills it; in the
``agent`` scenario the agent is, and each clause it has played out is announced with what was heard.
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
LONG_ANSWER = (
    "We open at nine in the morning on every weekday. On Saturdays we open an hour later, at ten. "
    "On Sundays the whole shop stays closed all day long. Public holidays follow the Sunday hours."
)


class Announcer:
    """The session's timeline: the platform's bus, then a line on stdout for the test to act on."""

    def __init__(self, platform: Platform, *kinds: EventType) -> None:
        self.platform = platform
        self.kinds = {EventType.TRANSCRIPT_FINAL, EventType.AGENT_REPLY_DONE, *kinds}

    def emit(self, event: Event) -> None:
        self.platform.bus.emit(event)
        if event.type in self.kinds:
            print(event.type, event.data.get("text", event.data.get("heard_text", "")), flush=True)


async def main(data_dir: Path, database_url: str, scenario: str = "user") -> None:
    platform = await Platform.open(Settings(data_dir=data_dir, database_url=database_url))
    await platform.agents.create(platform.default_org_id, AgentCreate(name="front-desk", config=agent()))
    live = await platform.live_call(agent_ref="front-desk")
    assert live.recorder is not None
    print("call", live.call_id, live.recorder.origin, flush=True)
    speaking = scenario == "agent"
    session = Session(
        live.agent,
        stack(LINES[2:] if speaking else LINES, [ScriptRule.say("everything", LONG_ANSWER), *RULES], 15),
        live.output(Loudspeaker(RATE)),
        Announcer(platform, *([EventType.AGENT_AUDIO_PLAYED] if speaking else [])),
        build_tools(live.agent),
        SessionOptions(interim_interval_s=None),
        session_id=live.session_id,
    )
    runner = asyncio.create_task(session.run())
    async with Microphone(Tap(live, session), RATE) as mic:  # type: ignore[arg-type]
        if speaking:  # one question; the line stays open (silence) while the long answer plays
            await mic.say(speech(0.8).pcm, RATE)
            await asyncio.Event().wait()
        await mic.say(speech(0.8).pcm, RATE)
        await wait_quiet(session)
        await mic.say(speech(0.8).pcm, RATE)
        await wait_quiet(session)
        print("speaking", flush=True)
        await mic.say(speech(30.0).pcm, RATE)  # a long third turn: killed in the middle of it
    await runner


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2], *sys.argv[3:4]))
