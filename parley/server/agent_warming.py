"""Preparing an agent (models, prompt, greeting) ahead of its first call, so no caller waits for it.

Two moments call for it: a phone call being connected (the carrier sets up the media stream meanwhile)
and an agent version just saved through the API. Neither ever fails what asked for it: a failure is
logged, and the call's own admission loads the agent again and tells its caller.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from parley.engine.agent import AgentConfig

if TYPE_CHECKING:
    from parley.platform.runtime import Platform
    from parley.server.runtime import LiveRuntime

log = structlog.get_logger("parley.server.runtime")

MAX_SAVED_WARMS = 8
"""Agents at most waiting to be prepared after a save (``AgentWarming.warm_saved``)."""


class AgentWarming:
    """The runtime's preparations under way: it reads the runtime's store, engines and drain state as
    they are when a preparation starts."""

    def __init__(self, runtime: LiveRuntime) -> None:
        self._runtime = runtime
        self._warming: set[asyncio.Future[None]] = set()
        self._warming_saved: dict[str, asyncio.Task[None]] = {}
        """Agents whose version just saved is being prepared ahead of its first call (``warm_saved``)."""
        self._saved_warms = asyncio.Semaphore(1)
        """One such preparation at a time: saves must not take the CPU from calls under way."""

    def warm_for_call(self, session_id: str) -> None:
        """Load the call's agent (models, prompt, greeting) now, while the carrier sets up the media
        stream, so the caller hears the greeting as soon as it connects. Never fails the call."""
        if self._runtime.platform is None:
            return
        task = asyncio.ensure_future(self._warm_for_call(self._runtime.platform, session_id))
        self._warming.add(task)
        task.add_done_callback(self._warming.discard)

    async def _warm_for_call(self, platform: Platform, session_id: str) -> None:
        runtime = self._runtime
        try:
            call, agent = await platform.calls.claim(session_id)
            if agent is not None:
                await runtime.engines.stack_for(agent, await runtime.secrets_for(agent, call.org_id))
        except Exception as exc:  # the session's own admission reports a real failure to the caller
            log.warning("warming a phone call's agent failed", session_id=session_id, error=repr(exc))

    def warm_saved(self, org_id: str, agent_id: str, agent: AgentConfig) -> None:
        """Prepare an agent version just saved (created or edited through the API) in the background, so
        its first call, phone or web, does not wait for its prompt and greeting to be primed. It is the
        stack that call's admission asks for (the agent as served, with the organization's secrets), and
        ``engines.stack_for`` runs one preparation per stack: a call arriving meanwhile waits for this one
        instead of warming again. Never fails the save: a failure is logged; the first call tries again.

        Bounded, as a tenant may save in a loop: they run one at a time, an agent's newer version
        replaces its older one still waiting, and with ``MAX_SAVED_WARMS`` agents waiting a save is left
        to its first call."""
        if self._runtime.draining or not self._runtime.settings.realtime_enabled:
            return  # no call will be admitted here to use it
        earlier = self._warming_saved.pop(agent_id, None)
        if earlier is not None:
            earlier.cancel()
        if len(self._warming_saved) >= MAX_SAVED_WARMS:
            log.info("not warming a saved agent: too many waiting", agent_id=agent_id, org_id=org_id)
            return
        task = asyncio.create_task(self._warm_saved(org_id, agent_id, agent), name=f"warm-agent-{agent_id}")
        self._warming_saved[agent_id] = task
        task.add_done_callback(lambda done: self._forget_saved_warm(agent_id, done))

    def cancel_saved(self) -> None:
        """Drop the saved versions' preparations: a draining server takes no call that would use them."""
        for warming in list(self._warming_saved.values()):
            warming.cancel()

    def _forget_saved_warm(self, agent_id: str, task: asyncio.Task[None]) -> None:
        if self._warming_saved.get(agent_id) is task:
            del self._warming_saved[agent_id]

    async def _warm_saved(self, org_id: str, agent_id: str, agent: AgentConfig) -> None:
        runtime = self._runtime
        bound = log.bind(agent_id=agent_id, org_id=org_id, agent=agent.name)
        try:
            # After the default agent: models are loaded once, and two loads at once would load them twice.
            await runtime.engines.ready.wait()
            served = runtime.served_as_filed(agent)
            async with self._saved_warms:
                started = asyncio.get_running_loop().time()
                await runtime.engines.stack_for(served, await runtime.secrets_for(served, org_id))
        except Exception as exc:  # the first call's admission loads it again and reports to its caller
            bound.error("warming a saved agent failed", error=repr(exc), exc_info=exc)
            return
        bound.info("saved agent is ready", waited_s=round(asyncio.get_running_loop().time() - started, 2))
