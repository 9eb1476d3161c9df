"""What every live transport shares: settings, the session registry, metrics, agents and their models.

Opening a session (admission, agent lookup, models, limits) is the same for every wire; a transport
only attaches a connection to the ``LiveSession`` it gets back. Which agent a client may have is
``agent_lookup``'s to say; preparing agents ahead of their first call, ``agent_warming``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from parley.config import Settings
from parley.engine.agent import AgentConfig
from parley.engine.reply import ReplySettings
from parley.engine.session import SessionOptions
from parley.engine.tools import CallContext
from parley.engine.transport import CallControls
from parley.platform.directory import StoredAgent
from parley.platform.messages import CallOutbox
from parley.server.agent_lookup import AgentLookup, check_pinned
from parley.server.agent_warming import AgentWarming
from parley.server.guard import ClientCaps
from parley.server.live import LiveLimits, LiveSession
from parley.server.metrics import ServerMetrics
from parley.server.registry import AdmissionError, InMemoryRegistry, SessionRegistry, slot
from parley.server.stacks import Engines
from parley.stack import build_tools
from parley.transports.twilio_protocol import ULAW_RATE as PHONE_RATE
from parley.transports.ws_protocol import ErrorCode

log = structlog.get_logger("parley.server.runtime")

if TYPE_CHECKING:
    from parley.platform.live import LiveCall
    from parley.platform.runtime import Platform


class Closable(Protocol):
    def close(self, code: int, reason: str) -> None: ...

    def wait_closed(self) -> Awaitable[None]: ...


@dataclass(frozen=True, slots=True)
class Client:
    """Who is asking for a session: their address (for per-address caps) and the wire they came on."""

    address: str
    transport: str = "websocket"


LOCAL_CLIENT = Client("local")
"""In-process callers (tests, tools): one address like any other."""

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
        self.caps = ClientCaps(settings.max_connections_per_ip, settings.max_sessions_per_ip)
        self._client_of: dict[str, str] = {}
        self.warming = AgentWarming(self)
        self._opening_calls: set[str] = set()
        """Phone calls being connected right now: a second stream for one of them is refused."""
        self.drain_hooks: list[Callable[[float], Awaitable[None]]] = []
        """Run with the grace period alongside the sessions' drain (coached rooms end theirs there)."""
        self._empty = asyncio.Event()
        self._empty.set()

    async def open_session(
        self,
        agent_name: str | None,
        input_rate: int,
        output_rate: int,
        *,
        client: Client = LOCAL_CLIENT,
        token: str | None = None,
        call_session: str | None = None,
    ) -> LiveSession:
        """Admit, load and start a session, or raise ``AdmissionError`` saying why not.

        A session needs a right to exist: a single-use ``token`` minted by the REST API (the call it was
        made for runs, with its agent version pinned), or a catalog agent marked ``public`` (anonymous;
        accounted to the operator's organization and marked ``public`` on the books)."""
        self._check_accepting()
        if call_session is not None and token is None:
            raise AdmissionError(
                ErrorCode.UNAUTHORIZED,
                "'call' is no longer accepted: start with the 'token' that POST /v1/agents/{id}/sessions "
                "returned",
            )
        agent: AgentConfig | None = None
        stored: StoredAgent | None = None
        if token is None:
            found = await self.agent_lookup.find_public_agent(agent_name)
            agent, stored = (None, found) if isinstance(found, StoredAgent) else (found, None)
        self.caps.take_session(client.address)
        admitted = False
        try:
            with slot(self.registry) as reservation:
                live = await self._admit(
                    agent,
                    input_rate,
                    output_rate,
                    client,
                    token,
                    reservation,
                    stored=stored,
                    named=agent_name if token is not None else None,
                )
                admitted = True
        finally:
            if not admitted:
                self.caps.give_session(client.address)
        self._client_of[live.id] = client.address
        self._empty.clear()
        live.start()
        return live

    async def open_phone_session(
        self, call_id: str, *, client: Client, call_sid: str | None = None
    ) -> LiveSession:
        """A session for a phone call already on the books (the voice webhook or the outbound queue
        created it), or ``AdmissionError`` saying why not. The line is μ-law at 8 kHz both ways.

        ``call_sid`` is the carrier's id the media stream announced: it must be the call's. Per-address
        caps do not apply: every phone call arrives from the carrier's few addresses, signed."""
        self._check_accepting()
        platform = self.platform
        if platform is None:
            raise AdmissionError(
                ErrorCode.UNKNOWN_CALL, "this server runs without its store: it has no phone calls"
            )
        if call_id in self._opening_calls:
            raise AdmissionError(ErrorCode.UNKNOWN_CALL, f"call {call_id} is already being connected")
        self._opening_calls.add(call_id)
        try:
            session_id = await self._phone_call(platform, call_id, call_sid)
            if self.registry.get(session_id) is not None:
                raise AdmissionError(ErrorCode.UNKNOWN_CALL, f"call {call_id} already has a media stream")
            with slot(self.registry) as reservation:
                live = await self._admit(
                    None, PHONE_RATE, PHONE_RATE, client, None, reservation, session_id=session_id
                )
        finally:
            self._opening_calls.discard(call_id)
        self._empty.clear()
        live.start()
        return live

    async def record_file_agents(self) -> None:
        """File each of the operator's agents under its record now, as it is: a phone number or a
        session token can then name it before anyone has called it, and gets today's file."""
        if self.platform is None:
            return
        for agent in self.engines.catalog.agents():
            await self.platform.agents.ensure(self.platform.default_org_id, agent)

    def served_as_filed(self, agent: AgentConfig) -> AgentConfig:
        """The operator's own agent in place of its record, when the record is what the file says: a
        Python agent's tools are code, which no record holds. Anything else runs as it was stored."""
        served = self.engines.catalog.get(agent.name)
        if served is None or served is agent or served.name != agent.name:
            return agent
        return served if AgentConfig.model_validate(served.model_dump(mode="json")) == agent else agent

    @property
    def agent_lookup(self) -> AgentLookup:
        """The agents a client can name now: the operator's, and the store's while it is open."""
        return AgentLookup(self.engines.catalog, self.platform)

    async def agent_offer(self, ref: str | None) -> dict[str, Any]:
        """The voice page's agent list, and what became of the agent it asked to select
        (``AgentLookup.agent_offer``)."""
        return await self.agent_lookup.agent_offer(ref)

    def warm_for_call(self, session_id: str) -> None:
        """Load the call's agent while the carrier connects its media stream
        (``AgentWarming.warm_for_call``). Never fails the call."""
        self.warming.warm_for_call(session_id)

    def warm_saved(self, org_id: str, agent_id: str, agent: AgentConfig) -> None:
        """Prepare an agent version just saved, in the background (``AgentWarming.warm_saved``). Never
        fails the save."""
        self.warming.warm_saved(org_id, agent_id, agent)

    @staticmethod
    async def _phone_call(platform: Platform, call_id: str, call_sid: str | None) -> str:
        """The session id of a phone call that may be connected now."""
        from parley.platform.phone import CallMismatch

        try:
            return await platform.phone.stream_session(call_id, call_sid)
        except CallMismatch as exc:
            raise AdmissionError(ErrorCode.UNKNOWN_CALL, str(exc)) from exc

    async def secrets_for(self, agent: AgentConfig, org_id: str | None) -> dict[str, str]:
        from parley.webhooks.tool import secret_names

        key = agent.llm.options.get("api_key_secret")
        wanted = ([key] if key else []) + sorted(secret_names(agent))  # and webhook tools' headers
        if wanted and self.platform is not None and org_id is not None:
            return await self.platform.secrets.resolve(org_id, wanted)
        return {}

    def _check_accepting(self) -> None:
        if not self.settings.realtime_enabled:
            raise AdmissionError(
                ErrorCode.REALTIME_DISABLED,
                "live sessions are disabled on this server (PARLEY_REALTIME_ENABLED=false)",
            )
        if self.draining:
            raise AdmissionError(
                ErrorCode.SHUTTING_DOWN, "the server is shutting down and takes no new sessions"
            )

    async def _admit(
        self,
        agent: AgentConfig | None,
        input_rate: int,
        output_rate: int,
        client: Client,
        token: str | None,
        reservation: object,
        *,
        session_id: str | None = None,
        stored: StoredAgent | None = None,
        named: str | None = None,
    ) -> LiveSession:
        """``stored``: a public stored agent, whose call pins its version now; ``named``: the agent a
        token-bearing client said it expects (the token's call must be that agent's)."""
        settings = self.settings
        call = None
        secrets: dict[str, str] = {}
        if token is not None or session_id is not None:
            if token is not None:
                call = await self._connect_token(token, client)
            else:
                assert self.platform is not None and session_id is not None
                call = await self.platform.live_call(session_id=session_id)
        elif stored is not None:
            call = await self._public_call(stored, client)
        if call is not None:
            agent = self.served_as_filed(call.agent)
            secrets = await self.secrets_for(agent, call.call.org_id)
        assert agent is not None
        try:
            if call is not None:
                check_pinned(call, named, stored)
            try:
                stack = await self.engines.stack_for(agent, secrets)
            except Exception as exc:  # the operator reads why in the log; the client, that it failed
                log.exception("the models for an agent failed to load", agent=agent.name)
                raise AdmissionError(
                    ErrorCode.NOT_READY,
                    f"the models for agent '{agent.name}' failed to load; the server's log says why",
                ) from exc
            if call is None and self.platform is not None:
                filed, _version = await self.platform.agents.ensure(self.platform.default_org_id, agent)
                call = await self.platform.live_call(
                    agent_ref=filed.id, transport=client.transport, access="public", client_ip=client.address
                )
        except BaseException:
            if call is not None:
                await call.finish(failed=True)
            raise
        # The engine takes tokens, temperature and tool rounds from the agent; pacing is ours.
        lead_s = settings.audio_output_lead_ms / 1000
        reply = ReplySettings(frame_ms=settings.audio_frame_ms, lead_s=lead_s)
        limits = LiveLimits(
            settings.session_idle_timeout_s,
            settings.max_session_duration_s,
            settings.reconnect_grace_s,
            settings.session_start_timeout_s,
        )
        controls = CallControls()
        context = CallContext(controls=controls)  # what the agent's tools learn of the call
        if call is not None:
            known = call.variables()
            context.call_id, context.metadata = known.call_id, call.tool_metadata()
            context.caller_number = known.caller_number or None
            context.caller_name = known.caller_name or None
            if self.platform is not None and call.call.org_id is not None:  # send_sms/send_email: the outbox
                context.messages = CallOutbox.of(self.platform, org_id=call.call.org_id, call_id=call.call_id)
        live = LiveSession(
            agent,
            stack,
            input_rate=input_rate,
            output_rate=output_rate,
            limits=limits,
            options=SessionOptions(
                reply=reply,
                knowledge=await call.knowledge() if call is not None else None,
                variables=call.variables() if call is not None else None,
            ),
            tools=build_tools(agent, context=context, secrets=secrets),
            on_closed=self._closed,
            call=call,
            controls=controls,
        )
        context.call_id = context.call_id or live.id
        live.subscribe_metrics(self.metrics.observe)
        for hook in self.session_hooks:
            hook(live)
        self.registry.add(reservation, live)
        return live

    async def _public_call(self, stored: StoredAgent, client: Client) -> LiveCall:
        """An anonymous call with a public stored agent, on its organization's books, pinned to the
        version that is the agent's latest right now."""
        from parley.platform.agents import NotFound

        assert self.platform is not None
        try:
            return await self.platform.live_call(
                org_id=stored.org_id,
                agent_ref=stored.id,
                transport=client.transport,
                access="public",
                client_ip=client.address,
            )
        except NotFound as exc:  # deleted since it was looked up
            raise AdmissionError(ErrorCode.UNKNOWN_AGENT, f"no agent named {stored.name!r}") from exc

    async def _connect_token(self, token: str, client: Client) -> LiveCall:
        """The call a session token was minted for, now bound to this client (the token is spent)."""
        from parley.platform.calls import TokenRefused

        if self.platform is None:
            raise AdmissionError(
                ErrorCode.UNAUTHORIZED, "this server runs without its store: it has no session tokens"
            )
        try:
            return await self.platform.connect_live_call(
                token, transport=client.transport, client_ip=client.address
            )
        except TokenRefused as exc:
            raise AdmissionError(ErrorCode.UNAUTHORIZED, str(exc)) from exc

    def _closed(self, live: LiveSession) -> None:
        self.registry.remove(live.id)
        address = self._client_of.pop(live.id, None)
        if address is not None:
            self.caps.give_session(address)
        if not len(self.registry):
            self._empty.set()

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop admitting, let live sessions finish for up to ``grace_s``, then end the rest cleanly."""
        grace = self.settings.shutdown_grace_s if grace_s is None else grace_s
        self.draining = True
        self.registry.accepting = False
        self.warming.cancel_saved()  # ahead of calls this server no longer takes
        hooks = [asyncio.ensure_future(hook(grace)) for hook in self.drain_hooks]
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
        for outcome in await asyncio.gather(*hooks, return_exceptions=True):
            if isinstance(outcome, BaseException):
                log.error("a drain hook failed", error=repr(outcome))
        for connection in list(self.connections):
            connection.close(1001, "server_shutdown")
        closing = [connection.wait_closed() for connection in list(self.connections)]
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2.0):
                await asyncio.gather(*closing, return_exceptions=True)
