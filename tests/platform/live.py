"""Drive a live call through the platform the way a transport does, on fast deterministic engines."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from parley.audio.frame import AudioFrame
from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.events import now
from parley.engine.session import EngineStack, Session, SessionOptions
from parley.engine.state import SessionState
from parley.platform.live import LiveCall
from parley.platform.runtime import Platform
from parley.platform.schemas import AgentCreate, CallDetail
from parley.providers.llm.scripted import ScriptRule
from parley.simulation import Loudspeaker, Microphone
from parley.stack import build_tools
from tests.engine.harness import RATE, stack


class Tap:
    """What the microphone feeds: the call's recorder, then the session (as a transport does)."""

    def __init__(self, live: LiveCall, session: Session) -> None:
        self.live = live
        self.session = session

    def feed_audio(self, frame: AudioFrame) -> None:
        self.live.hear(frame)
        self.session.feed_audio(frame)


async def wait_quiet(session: Session, within_s: float = 10.0) -> None:
    """Until the agent has answered and said everything (as a person waits before speaking again)."""
    deadline = now() + within_s
    quiet_since: float | None = None
    while now() < deadline and session.state is not SessionState.ENDED:
        idle = (
            session.state is SessionState.LISTENING and session._reply is None and session._candidate is None
        )
        quiet_since = (quiet_since or now()) if idle else None
        if quiet_since is not None and now() - quiet_since > 0.4:
            return
        await asyncio.sleep(0.02)


async def run_live_call(
    platform: Platform,
    agent_ref: str | None,
    lines: Sequence[str],
    rules: Sequence[ScriptRule],
    turns: Sequence[AudioFrame],
    *,
    reason: str = "hangup",
    live: LiveCall | None = None,
    engines: EngineStack | None = None,
) -> LiveCall:
    """One call, as a WebSocket transport would run it: greeting, the user's turns, hang-up (on
    ``engines``, else scripted ones from ``lines`` and ``rules``)."""
    live = live or await platform.live_call(agent_ref=agent_ref, transport="websocket")
    async with live:
        speaker = Loudspeaker(RATE)
        session = Session(
            live.agent,
            engines or stack(lines, rules, ms_per_char=15),
            live.output(speaker),
            live.timeline,
            build_tools(live.agent),
            SessionOptions(interim_interval_s=None),
            session_id=live.session_id,
        )
        runner = asyncio.create_task(session.run())
        async with Microphone(Tap(live, session), RATE) as mic:  # type: ignore[arg-type]
            await wait_quiet(session)
            for audio in turns:
                await mic.say(audio.pcm, audio.sample_rate)
                await wait_quiet(session)
        session.end(reason)
        await runner
    return live


async def call_record(
    settings: Settings, config: AgentConfig, engines: EngineStack, turns: Sequence[AudioFrame]
) -> CallDetail:
    """One call of an agent ``support`` made of ``config`` (``run_live_call`` on ``engines``), and its
    record as the API shows it once the call has ended and been settled."""
    platform = await Platform.open(settings)
    try:
        org = platform.default_org_id
        await platform.agents.create(org, AgentCreate(name="support", config=config))
        live = await run_live_call(platform, "support", [], [], turns, engines=engines)
        await platform.settle()
        return await platform.calls.detail(org, live.call_id)
    finally:
        await platform.close()
