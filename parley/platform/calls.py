"""Calls: placing them on the books, moving them through their lifecycle, and reading them back whole."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.engine.agent import AgentConfig
from parley.platform.agents import NotFound, runnable_config
from parley.platform.analysis import view as analysis_view
from parley.platform.messages import message_view
from parley.platform.pricing import Pricing
from parley.platform.recordings import Recordings
from parley.platform.schemas import CallDetail, CallSummary, EventOut, Page, TurnOut
from parley.platform.usage import agent_config_of, call_costs, duration_s, finish_call
from parley.store.agents import AgentRepository
from parley.store.analyses import AnalysisRepository
from parley.store.calls import CallFilters, CallRepository
from parley.store.db import Database
from parley.store.lifecycle import CallStatus, Decision
from parley.store.models import AgentVersion, Call
from parley.store.notifications import NotificationRepository
from parley.store.types import utcnow
from parley.timeline.digest import latency_summary


async def _version_numbers(session: AsyncSession, calls: Sequence[Call]) -> dict[str, int]:
    ids = {c.agent_version_id for c in calls if c.agent_version_id}
    if not ids:
        return {}
    rows = await session.execute(
        select(AgentVersion.id, AgentVersion.version).where(AgentVersion.id.in_(ids))
    )
    return {ident: number for ident, number in rows}


def summary(call: Call, versions: dict[str, int]) -> CallSummary:
    return CallSummary(
        id=call.id,
        org_id=call.org_id,
        session_id=call.session_id,
        agent_id=call.agent_id,
        agent_version=versions.get(call.agent_version_id or ""),
        direction=call.direction,
        transport=call.transport,
        from_number=call.from_number,
        to_number=call.to_number,
        status=call.status,
        end_reason=call.end_reason,
        created_at=call.created_at,
        started_at=call.started_at,
        ended_at=call.ended_at,
        duration_s=duration_s(call),
        access=call.access,
        client_ip=call.client_ip,
        provider_call_id=call.provider_call_id,
        answered_by=call.answered_by,
        job_id=call.job_id,
        metadata=call.metadata_ or {},
    )


async def summarize(session: AsyncSession, call: Call) -> CallSummary:
    """One call's summary, with the number of the agent version it runs."""
    return summary(call, await _version_numbers(session, [call]))


class TokenRefused(PermissionError):
    """A session token that cannot (or can no longer) connect a call."""


def hash_token(token: str) -> str:
    """Tokens are long random strings: a plain sha256 is enough, and lets the store look them up."""
    return hashlib.sha256(token.encode()).hexdigest()


CallEndedHook = Callable[[AsyncSession, Call], Awaitable[object]]


class CallService:
    def __init__(
        self,
        db: Database,
        pricing: Pricing,
        recordings: Recordings,
        on_ended: CallEndedHook | None = None,
    ) -> None:
        """``on_ended`` runs in the transaction that ends a call, after its costs (post-call analysis)."""
        self.db = db
        self.pricing = pricing
        self.recordings = recordings
        self.on_ended = on_ended

    async def create(
        self,
        org_id: str,
        *,
        direction: str,
        transport: str,
        agent_ref: str | None = None,
        from_number: str | None = None,
        to_number: str | None = None,
        session_id: str | None = None,
        access: str | None = None,
        client_ip: str | None = None,
        connect_token_hash: str | None = None,
        provider_call_id: str | None = None,
        job_id: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> tuple[CallSummary, AgentConfig | None]:
        """A queued call, pinned to the agent's latest version (returned too, to run the call with).

        Raises ``NotFound`` for an unknown agent and ``BrokenAgent`` (a ``Conflict``) when the agent's
        stored configuration no longer passes the configuration check; no call is created then."""
        async with self.db.session() as session:
            agent_id = version_id = None
            config: AgentConfig | None = None
            versions: dict[str, int] = {}
            if agent_ref is not None:
                repo = AgentRepository(session)
                agent = await repo.by_ref(org_id, agent_ref)
                if agent is None:
                    raise NotFound(f"no agent {agent_ref!r}")
                version = await repo.version(agent.id, agent.latest_version)
                assert version is not None
                config = runnable_config(agent, version)  # BrokenAgent before anything is written
                agent_id, version_id = agent.id, version.id
                versions[version.id] = version.version
            call = await CallRepository(session).create(
                org_id,
                direction=direction,
                transport=transport,
                agent_id=agent_id,
                agent_version_id=version_id,
                session_id=session_id,
                from_number=from_number,
                to_number=to_number,
                access=access,
                client_ip=client_ip,
                connect_token_hash=connect_token_hash,
                provider_call_id=provider_call_id,
                job_id=job_id,
                metadata=metadata,
            )
            return summary(call, versions), config

    async def connect(
        self, token: str, *, ttl_s: float, transport: str, client_ip: str | None
    ) -> tuple[CallSummary, AgentConfig | None]:
        """Spend a session token: the queued call it was minted for, now bound to this client.

        Raises ``TokenRefused`` for an unknown, spent or expired token, or a call no longer queued."""
        async with self.db.session() as session:
            calls = CallRepository(session)
            call = await calls.consume_token(hash_token(token))
            if call is None:
                raise TokenRefused("this session token is unknown or was already used")
            if utcnow() - call.created_at > timedelta(seconds=ttl_s):
                raise TokenRefused(f"this session token expired (tokens live {ttl_s:g} s); ask for a new one")
            if call.status != CallStatus.QUEUED.value:
                raise TokenRefused(f"call {call.id} was already connected (status {call.status})")
            call.transport = transport
            call.access = "token"
            call.client_ip = client_ip
            return summary(call, await _version_numbers(session, [call])), await agent_config_of(
                session, call
            )

    async def claim(self, session_id: str) -> tuple[CallSummary, AgentConfig | None]:
        """The call a transport was asked to connect (by session id) and the agent version it runs."""
        async with self.db.session() as session:
            call = (await CallRepository(session).by_sessions([session_id])).get(session_id)
            if call is None:
                raise NotFound(f"no call for session {session_id!r}")
            return summary(call, await _version_numbers(session, [call])), await agent_config_of(
                session, call
            )

    async def set_status(
        self,
        call_id: str,
        status: CallStatus | str,
        *,
        reason: str | None = None,
        org_id: str | None = None,
        at: datetime | None = None,
    ) -> tuple[Decision, CallSummary]:
        """Apply a status update (from telephony callbacks, the queue, an operator, recovery); see
        ``lifecycle``. ``at``: when it happened, if not now."""
        async with self.db.session() as session:
            calls = CallRepository(session)
            call = await calls.get(call_id, org_id)
            if call is None:
                raise NotFound(f"no call {call_id!r}")
            decision = await calls.set_status(call, status, reason=reason, at=at)
            if decision is Decision.APPLY and CallStatus(status).terminal:
                await finish_call(session, call, self.pricing)
                if self.on_ended is not None:
                    await self.on_ended(session, call)
            return decision, summary(call, await _version_numbers(session, [call]))

    async def page(
        self, org_id: str, filters: CallFilters, limit: int = 50, cursor: str | None = None
    ) -> Page[CallSummary]:
        async with self.db.session() as session:
            calls, next_cursor = await CallRepository(session).page(org_id, filters, limit, cursor)
            versions = await _version_numbers(session, calls)
            return Page[CallSummary](data=[summary(c, versions) for c in calls], next_cursor=next_cursor)

    async def detail(self, org_id: str, call_id: str, *, max_events: int = 5000) -> CallDetail:
        async with self.db.session() as session:
            calls = CallRepository(session)
            call = await calls.get(call_id, org_id)
            if call is None:
                raise NotFound(f"no call {call_id!r}")
            events = await calls.events(call.id, limit=max_events)
            origin = next(
                (e.t for e in events if e.type == "session.started"), events[0].t if events else 0.0
            )
            turns = await calls.turns(call.id)
            recording = await calls.recording(call.id)
            costs = await call_costs(session, call, self.pricing)
            analysis = await AnalysisRepository(session).get(call.id)
            messages = await NotificationRepository(session).for_call(call.id, org_id)
            base = summary(call, await _version_numbers(session, [call]))
            return CallDetail(
                **base.model_dump(),
                transcript=[
                    TurnOut(
                        speaker="agent" if t.speaker == "agent" else "user",
                        text=t.text,
                        start_ms=t.start_ms,
                        end_ms=t.end_ms,
                        interrupted=t.interrupted,
                    )
                    for t in turns
                ],
                events=[
                    EventOut(
                        seq=e.seq, type=e.type, t_ms=round((e.t - origin) * 1000, 1), at=e.at, data=e.data
                    )
                    for e in events
                ],
                recording=await self.recordings.view(recording) if recording is not None else None,
                costs=costs,
                metrics=call.metrics if call.metrics is not None else latency_summary(events),
                analysis=analysis_view(analysis) if analysis is not None else None,
                messages=[message_view(m) for m in messages],
            )

    async def feed(self, org_id: str, call_id: str, after_seq: int = 0, limit: int = 500) -> Feed:
        """Stored events after ``after_seq`` (the live feed's catch-up), with the call as it is now."""
        async with self.db.session() as session:
            calls = CallRepository(session)
            call = await calls.get(call_id, org_id)
            if call is None:
                raise NotFound(f"no call {call_id!r}")
            first = await calls.events(call.id, limit=1)
            origin = first[0].t if first else None
            rows = await calls.events(call.id, after_seq=after_seq, limit=limit)
            return Feed(
                summary(call, {}),
                origin,
                [
                    EventOut(
                        seq=e.seq,
                        type=e.type,
                        at=e.at,
                        data=e.data,
                        t_ms=round((e.t - (origin or e.t)) * 1000, 1),
                    )
                    for e in rows
                ],
            )


@dataclass(frozen=True, slots=True)
class Feed:
    call: CallSummary
    origin: float | None
    """The session's clock at its first event (for ``t_ms`` of events still to come)."""
    events: list[EventOut]
