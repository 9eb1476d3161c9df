"""What every live transport shares: settings, the session registry, metrics, agents and their models.

Opening a session (admission, agent lookup, models, limits) is the same for every wire; a transport
only attaches a connection to the ``LiveSession`` it gets back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from parley.config import Settings
from parley.engine.agent import AgentConfig, default_agent
from parley.engine.reply import ReplySettings
from parley.engine.session import SessionOptions
from parley.server.live import LiveLimits, LiveSession
from parley.server.metrics import ServerMetrics
from parley.server.registry import AdmissionError, InMemoryRegistry, SessionRegistry, slot
from parley.server.stacks import Engines
from parley.stack import build_tools
from parley.transports.ws_protocol import ErrorCode

if TYPE_CHECKING:
    from parley.platform.runtime import Platform


class Closable(Protocol):
    def close(self, code: int, reason: str) -> None: ...

    def wait_closed(self) -> Awaitable[None]: ...


SessionHook = Callable[[LiveSession], None]
"""Called with every new session before it runs, e.g. to subscribe a store to its timeline."""


class LiveRuntime:
    def __init__(
        self,
        settings: Settings,
        engines: Engines,
        *,
        registry: SessionRegistry | None = None,
        metrics: ServerMetrics | None = None,
        session_hooks: Sequence[SessionHook] = (),
    ) -> None:
        self.settings = settings
        self.engines = engines
        self.registry: SessionRegistry = registry or InMemoryRegistry(settings.max_concurrent_sessions)
        self.metrics = metrics or ServerMetrics()
        self.session_hooks = list(session_hooks)
        self.platform: Platform | None = None
        """Set while the store is open: every session is then a call on the books."""
        self.draining = False
        self.connections: set[Closable] = set()
        """Open client connections, so shutdown can wait for their last messages to go out."""
        self._empty = asyncio.Event()
        self._empty.set()

    async def open_session(
        self, agent_name: str | None, input_rate: int, output_rate: int, *, call_session: str | None = None
    ) -> LiveSession:
        """Admit, load and start a session, or raise ``AdmissionError`` saying why not.

        With ``call_session`` the session runs a call created beforehand through the API, with the agent
        version pinned to it; otherwise ``agent_name`` comes from the catalog (and, with a store, a new
        call is opened for it)."""
        settings = self.settings
        if not settings.realtime_enabled:
            raise AdmissionError(
                ErrorCode.REALTIME_DISABLED,
                "live sessions are disabled on this server (PARLEY_REALTIME_ENABLED=false)",
            )
        if self.draining:
            raise AdmissionError(
                ErrorCode.SHUTTING_DOWN, "the server is shutting down and takes no new sessions"
            )
        agent = await self._pre_created_agent(call_session) if call_session else None
        agent = agent or self.engines.catalog.get(agent_name)
        if agent is None:
            names = ", ".join(s.name for s in self.engines.catalog.summaries())
            raise AdmissionError(
                ErrorCode.UNKNOWN_AGENT, f"no agent named {agent_name!r} (available: {names})"
            )
        with slot(self.registry) as reservation:
            try:
                stack = await self.engines.stack_for(agent)
            except Exception as exc:
                raise AdmissionError(
                    ErrorCode.NOT_READY, f"the models for agent '{agent.name}' failed to load: {exc}"
                ) from exc
            # The engine takes tokens, temperature and tool rounds from the agent; pacing is ours.
            lead_s = settings.audio_output_lead_ms / 1000
            reply = ReplySettings(frame_ms=settings.audio_frame_ms, lead_s=lead_s)
            limits = LiveLimits(
                settings.session_idle_timeout_s, settings.max_session_duration_s, settings.reconnect_grace_s
            )
            call = None
            if self.platform is not None and call_session is not None:
                call = await self.platform.live_call(session_id=call_session)
            elif self.platform is not None:
                stored, _version = await self.platform.agents.ensure(self.platform.default_org_id, agent)
                call = await self.platform.live_call(agent_ref=stored.id, transport="websocket")
            live = LiveSession(
                agent,
                stack,
                input_rate=input_rate,
                output_rate=output_rate,
                limits=limits,
                options=SessionOptions(reply=reply),
                tools=build_tools(agent),
                on_closed=self._closed,
                call=call,
            )
            live.subscribe_metrics(self.metrics.observe)
            for hook in self.session_hooks:
                hook(live)
            self.registry.add(reservation, live)
        self._empty.clear()
        live.start()
        return live

    async def _pre_created_agent(self, call_session: str) -> AgentConfig:
        """The agent version of a call created through the API, if that call can still be connected."""
        from parley.platform.agents import NotFound

        if self.platform is None:
            raise AdmissionError(
                ErrorCode.UNKNOWN_CALL, "this server runs without its store: it has no calls"
            )
        try:
            summary, config = await self.platform.calls.claim(call_session)
        except NotFound as exc:
            raise AdmissionError(ErrorCode.UNKNOWN_CALL, str(exc)) from exc
        if summary.status != "queued":
            raise AdmissionError(
                ErrorCode.UNKNOWN_CALL, f"call {summary.id} was already connected (status {summary.status})"
            )
        return config or default_agent()

    def _closed(self, live: LiveSession) -> None:
        self.registry.remove(live.id)
        if not len(self.registry):
            self._empty.set()

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop admitting, let live sessions finish for up to ``grace_s``, then end the rest cleanly."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.draining = True
        self.registry.accepting = False
        sessions = self.registry.sessions()
        for live in sessions:
            live.notify_shutdown(grace)
        try:
            async with asyncio.timeout(grace):
                await self._empty.wait()
        except TimeoutError:
            for live in self.registry.sessions():
                live.end("server_shutdown")
        remaining = [live.wait_closed() for live in self.registry.sessions()]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5.0):
                await asyncio.gather(*remaining, return_exceptions=True)
        for connection in list(self.connections):
            connection.close(1001, "server_shutdown")
        closing = [connection.wait_closed() for connection in list(self.connections)]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*closing, return_exceptions=True)
