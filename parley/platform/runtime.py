"""The platform in a process: database, timeline bus, persister, artifact store and the use-cases.

A server opens one ``Platform`` at start-up (migrations, recovery of calls a previous process left
behind, then the persister consuming the timeline) and closes it at shutdown. The CLI and
``parley simulate`` open one too, without consuming or recovering, to read and write the same store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from parley.artifacts import ArtifactStore, artifact_store
from parley.config import Settings, get_settings
from parley.engine.agent import AgentConfig, default_agent
from parley.platform.agents import AgentService, NotFound
from parley.platform.analysis import AnalysisService, emit_call_analyzed
from parley.platform.billing import Billing
from parley.platform.callbacks import CallbackService
from parley.platform.calls import CallService, hash_token
from parley.platform.documents import DocumentService
from parley.platform.leads import LeadService
from parley.platform.live import LiveCall
from parley.platform.phone import PhoneService
from parley.platform.pricing import Pricing
from parley.platform.recordings import Recordings
from parley.platform.schemas import CallSummary, WebSession
from parley.platform.secrets import SecretService
from parley.platform.usage import finish_call
from parley.store.db import Database
from parley.store.models import Call
from parley.store.tenants import TenantRepository
from parley.timeline.bus import TimelineBus
from parley.timeline.memory import MemoryTimeline
from parley.timeline.persister import Persister

log = structlog.get_logger("parley.platform")

PERSISTER_GROUP = "persister"
SWEEP_S = 60.0


def make_bus(settings: Settings) -> TimelineBus:
    """Redis Streams when ``PARLEY_REDIS_URL`` is set, else in-process with a journal in the data dir."""
    if settings.redis_url:
        from parley.timeline.redis_stream import RedisTimeline

        return RedisTimeline.from_url(
            settings.redis_url, stream=settings.timeline_stream, maxlen=settings.timeline_maxlen
        )
    return MemoryTimeline(settings.data_dir / "timeline", journal_group=PERSISTER_GROUP)


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Platform:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        bus: TimelineBus,
        artifacts: ArtifactStore,
        default_org_id: str,
    ) -> None:
        self.settings = settings
        self.db = db
        self.bus = bus
        self.artifacts = artifacts
        self.default_org_id = default_org_id
        self.pricing = Pricing.from_settings(settings)
        self.recordings = Recordings(
            db,
            artifacts,
            settings.data_dir / "recordings",
            sample_rate=settings.recording_sample_rate,
            url_expiry=timedelta(seconds=settings.artifact_url_expiry_s),
        )
        self.agents = AgentService(db)
        self.documents = DocumentService(db)
        self.secrets = SecretService(db, settings)
        self.analysis = AnalysisService(db, secrets=self.secrets.resolve, on_analyzed=self._call_analyzed)
        self.calls = CallService(db, self.pricing, self.recordings, on_ended=self.analysis.request)
        self.phone = PhoneService(db, self.calls)
        self.billing = Billing(db, self.pricing)
        self.leads = LeadService(db, settings)
        """Businesses and leads; the notification worker sets ``leads.wake`` to hear of new outbox rows."""
        self.callbacks = CallbackService(db, wake=lambda: self.leads.wake)
        """AI call-backs of leads: asked for here, reported from the outbound queue and the analysis."""
        self.persister = Persister(db, default_org_id=default_org_id, on_call_ended=self.call_ended)
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def open(
        cls,
        settings: Settings | None = None,
        *,
        migrate: bool = True,
        consume: bool = True,
        recover: bool = True,
        bus: TimelineBus | None = None,
    ) -> Platform:
        settings = settings or get_settings()
        db = Database.from_settings(settings)
        try:
            if migrate:
                await db.migrate()
            async with db.session() as session:
                org = await TenantRepository(session).ensure_org(settings.default_org)
        except BaseException:
            await db.dispose()
            raise
        platform = cls(settings, db, bus or make_bus(settings), artifact_store(settings), org.id)
        if recover:
            from parley.platform.recovery import recover_interrupted

            report = await recover_interrupted(platform)
            if report.calls:
                log.warning("marked calls a previous process left mid-flight failed", calls=report.calls)
        if consume:
            platform.start_consuming(recover=recover)
            await platform._ensure_bucket_rules()
        return platform

    async def _ensure_bucket_rules(self) -> None:
        """On S3, the retention of recordings is also a bucket rule, enforced by the server itself."""
        days = self.settings.recording_retention_days
        set_retention = getattr(self.artifacts, "set_retention", None)  # S3 only; boto3 stays unimported
        if days and set_retention is not None:
            try:
                await set_retention(days, prefix="recordings/")
            except Exception as exc:  # a bucket policy we may not change is not a reason to stop
                log.warning("could not set the bucket's retention rule", days=days, error=repr(exc))

    async def _call_analyzed(self, session: AsyncSession, org_id: str, payload: dict[str, Any]) -> None:
        """In the transaction that stores an analysis: the ``call.analyzed`` webhook event, and a lead's
        call-back outcome when the call was one."""
        await emit_call_analyzed(session, org_id, payload)
        await self.callbacks.call_analyzed(session, org_id, payload)

    async def call_ended(self, session: AsyncSession, call: Call) -> None:
        await finish_call(session, call, self.pricing)
        await self.analysis.request(session, call)

    def start_consuming(self, *, recover: bool = True) -> None:
        consumer = self.bus.consumer(PERSISTER_GROUP, consumer_name())
        self._tasks.append(asyncio.create_task(self.persister.run(consumer), name="persister"))
        self._tasks.append(asyncio.create_task(self.analysis.run(), name="post-call-analysis"))
        if recover:
            self._tasks.append(asyncio.create_task(self._sweep(), name="recovery"))
        if self.settings.recording_retention_days:
            self._tasks.append(
                asyncio.create_task(self._retention(self.settings.recording_retention_days), name="retention")
            )

    async def _sweep(self) -> None:
        """Recovery keeps running: other workers die too, and a call whose heartbeat stopped (the
        Redis timeline has no journal) is only recognisably abandoned minutes later."""
        from parley.platform.recovery import recover_interrupted

        while True:
            await asyncio.sleep(SWEEP_S)
            try:
                await recover_interrupted(self)
            except Exception:  # the next sweep tries again
                log.exception("recovery sweep failed")

    async def _retention(self, days: int) -> None:
        while True:
            try:
                await self.recordings.apply_retention(days)
            except Exception:  # tried again in six hours
                log.exception("recording retention failed", days=days)
            await asyncio.sleep(6 * 3600)

    async def settle(self, within_s: float = 10.0) -> None:
        """Wait until everything emitted so far is in the database (tests, tools, graceful shutdown)."""
        await self.bus.flush()
        self.persister.caught_up.clear()
        await asyncio.wait_for(self.persister.caught_up.wait(), within_s)

    async def org_id(self, slug: str | None = None) -> str:
        if slug is None or slug == self.settings.default_org:
            return self.default_org_id
        async with self.db.session() as session:
            org = await TenantRepository(session).org_by_slug(slug)
        if org is None:
            raise NotFound(f"no organization {slug!r}")
        return org.id

    async def start_web_session(
        self, org_id: str, agent_ref: str, metadata: dict[str, Any] | None = None
    ) -> WebSession:
        """A queued call and the single-use token a client connects it with; ``metadata`` fills the
        agent's ``{{metadata.<key>}}`` (and ``caller_name`` its ``{{caller.name}}``)."""
        token = secrets.token_urlsafe(32)
        call, _config = await self.calls.create(
            org_id,
            direction="web",
            transport="websocket",
            agent_ref=agent_ref,
            connect_token_hash=hash_token(token),
            metadata=metadata,
        )
        assert call.agent_id is not None and call.agent_version is not None
        return WebSession(
            call_id=call.id,
            session_id=call.session_id,
            agent_id=call.agent_id,
            agent_version=call.agent_version,
            status=call.status,
            token=token,
            expires_at=call.created_at + timedelta(seconds=self.settings.session_token_ttl_s),
        )

    async def live_call(
        self,
        *,
        session_id: str | None = None,
        org_id: str | None = None,
        agent_ref: str | None = None,
        transport: str = "websocket",
        direction: str = "web",
        from_number: str | None = None,
        to_number: str | None = None,
        record: bool = True,
        access: str | None = None,
        client_ip: str | None = None,
    ) -> LiveCall:
        """Everything a transport needs to run a call on the books: see ``LiveCall``.

        With ``session_id`` it connects a call created earlier (``start_web_session``, the outbound
        queue); otherwise it creates one for ``agent_ref`` (or the built-in agent)."""
        if session_id is not None:
            call, config = await self.calls.claim(session_id)
        else:
            call, config = await self.calls.create(
                org_id or self.default_org_id,
                direction=direction,
                transport=transport,
                agent_ref=agent_ref,
                from_number=from_number,
                to_number=to_number,
                access=access,
                client_ip=client_ip,
            )
        return await self._live(call, config, record)

    async def connect_live_call(
        self, token: str, *, transport: str, client_ip: str | None, record: bool = True
    ) -> LiveCall:
        """The call a session token was minted for, bound to this client (the token is spent); raises
        ``TokenRefused`` for a token that is unknown, used or expired."""
        call, config = await self.calls.connect(
            token, ttl_s=self.settings.session_token_ttl_s, transport=transport, client_ip=client_ip
        )
        return await self._live(call, config, record)

    async def _live(self, call: CallSummary, config: AgentConfig | None, record: bool) -> LiveCall:
        recorder = await self.recordings.start(call.id) if record else None
        return LiveCall(self, call, config or default_agent(), recorder)

    async def close(self) -> None:
        if self._tasks:
            with contextlib.suppress(TimeoutError):
                await self.settle(within_s=5.0)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.bus.close()
        await self.db.dispose()
