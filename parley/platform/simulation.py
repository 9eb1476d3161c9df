"""Filing a simulated conversation (``parley simulate``) in the same store as live calls."""

from __future__ import annotations

from collections.abc import Sequence

from parley.audio.frame import PCM16
from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.events import Event
from parley.store.calls import CallRepository
from parley.timeline.bus import Sequencer


async def record_simulation(
    *,
    agent: AgentConfig,
    events: Sequence[Event],
    channels: tuple[PCM16, PCM16] | None = None,
    sample_rate: int = 16000,
    settings: Settings | None = None,
    org: str | None = None,
) -> str:
    """Store a finished simulated call — row, timeline, transcript, costs and the stereo recording
    (user left, agent right) — under the agent named like ``agent`` (a new version if its configuration
    changed), and return the call id. The store is ``PARLEY_DATABASE_URL`` or the SQLite file in
    ``PARLEY_DATA_DIR``. Recording the same session again returns the call already stored.
    """
    from parley.platform.runtime import Platform

    if not events:
        raise ValueError("a simulation with no events has nothing to record")
    platform = await Platform.open(settings, consume=False, recover=False)
    try:
        org_id = await platform.org_id(org)
        session_id = events[0].session_id
        async with platform.db.session() as session:
            existing = (await CallRepository(session).by_sessions([session_id])).get(session_id)
        if existing is not None:
            return existing.id
        stored_agent, version = await platform.agents.ensure(org_id, agent)
        async with platform.db.session() as session:
            call = await CallRepository(session).create(
                org_id,
                direction="web",
                transport="simulation",
                agent_id=stored_agent.id,
                agent_version_id=version.id,
                session_id=session_id,
            )
        sequencer = Sequencer()
        await platform.persister.store([sequencer.stamp(event) for event in events])
        if channels is not None:
            await platform.recordings.store(call.id, channels, sample_rate)
        return call.id
    finally:
        await platform.close()
