"""Post-call analysis on the books: asked for when a call ends, done in the background, kept with the call.

The request is a ``call_analyses`` row written in the same transaction that ends the call, so a process
that dies before the analysis ran leaves it pending for the next worker, never lost. A worker claims
rows one at a time under a lease (a worker that dies mid-analysis loses its claim when the lease runs
out), runs ``parley.analysis.analyze`` with the agent version's own language model, and stores the
outcome: hang-up never waits for any of it.

A model that cannot be reached is tried again after the lease (up to ``max_attempts``); a model that
answers badly is an outcome, recorded per part. Either way the row ends ``completed``, ``failed`` or
``skipped`` with the reason, and the ``call.analyzed`` event is written with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from parley.analysis.post_call import AnalysisModelError, CallAnalysis, Line, analyze
from parley.engine.agent import AgentConfig
from parley.platform.agents import NotFound, checked_config
from parley.platform.schemas import AnalysisOut
from parley.platform.usage import agent_config_of, agent_version_of
from parley.providers.llm.base import LanguageModel
from parley.store.analyses import AnalysisRepository, AnalysisStatus
from parley.store.calls import CallRepository
from parley.store.db import Database
from parley.store.models import Call, CallAnalysisRecord
from parley.store.types import utcnow
from parley.store.webhooks import enqueue_event

log = structlog.get_logger("parley.platform.analysis")

ModelResolver = Callable[[AgentConfig, str], Awaitable[LanguageModel]]
"""The language model to analyse a call of ``agent`` in organization ``org_id`` with."""
AnalyzedHook = Callable[[AsyncSession, str, dict[str, Any]], Awaitable[None]]
"""Runs in the transaction that stores an outcome, with the org id and the ``call.analyzed`` payload
(the outbound webhooks' outbox)."""
SecretsResolver = Callable[[str, list[str]], Awaitable[dict[str, str]]]


def view(row: CallAnalysisRecord) -> AnalysisOut:
    return AnalysisOut(
        status=row.status,
        summary=row.summary,
        structured_data=row.structured_data,
        success=row.success,
        success_reason=row.success_reason,
        errors={str(k): str(v) for k, v in (row.errors or {}).items()},
        error=row.error,
        model=row.model,
        attempts=row.attempts,
        requested_at=row.requested_at,
        completed_at=row.completed_at,
    )


def event_payload(call: Call, out: AnalysisOut) -> dict[str, Any]:
    """What ``call.analyzed`` carries: the call's ids and the analysis, JSON-ready."""
    return {
        "call_id": call.id,
        "agent_id": call.agent_id,
        "analysis": out.model_dump(mode="json", exclude={"attempts"}),
    }


async def emit_call_analyzed(session: AsyncSession, org_id: str, payload: dict[str, Any]) -> None:
    """Write the ``call.analyzed`` event for the organization's webhook endpoints, in the transaction
    that stores the analysis (so the event exists exactly when the analysis does). Each run of an
    analysis (a rerun asks again) is one event: the key names the call and when the run was asked for."""
    key = f"{payload['call_id']}:call.analyzed:{payload['analysis']['requested_at']}"
    await enqueue_event(session, org_id, "call.analyzed", payload, key=key)


def secret_names(agent: AgentConfig) -> list[str]:
    name = agent.llm.options.get("api_key_secret")
    return [str(name)] if name else []


async def stack_model(agent: AgentConfig, secrets: Mapping[str, str]) -> LanguageModel:
    """The agent's language model from the process-wide model cache (the instance live calls share)."""
    from parley.stack import build_stack

    stack = await asyncio.to_thread(build_stack, agent, secrets)
    return stack.llm


class UnusableAgentVersion(ValueError):
    """The call's agent version was stored before a check it now fails (a tool or analysis schema)."""


async def _config_of(session: AsyncSession, call: Call) -> AgentConfig | None:
    """The call's agent version, None without one. Unlike ``agent_config_of``, one that no longer
    validates is an ``UnusableAgentVersion`` saying why, not "asks for no analysis"."""
    version = await agent_version_of(session, call)
    if version is None:
        return None
    config, problem = checked_config(version)
    if problem is not None:
        raise UnusableAgentVersion(
            f"the agent version of call {call.id} is no longer valid, so it cannot be analysed; {problem}"
        )
    assert isinstance(config, AgentConfig)
    return config


class AnalysisService:
    def __init__(
        self,
        db: Database,
        *,
        models: ModelResolver | None = None,
        secrets: SecretsResolver | None = None,
        on_analyzed: AnalyzedHook | None = None,
        lease: timedelta = timedelta(minutes=2),
        max_attempts: int = 3,
        poll_s: float = 30.0,
    ) -> None:
        """``models``: where a call's model comes from (default: the agent's own, via ``parley.stack``,
        with ``secrets`` resolving the organization's key names). ``poll_s``: how often the worker looks
        for analyses other processes asked for (its own are picked up at once)."""
        self.db = db
        self.models = models or self._agent_model
        self.secrets = secrets
        self.on_analyzed = on_analyzed
        self.lease = lease
        self.max_attempts = max_attempts
        self.poll_s = poll_s
        self._wake = asyncio.Event()
        self.idle = asyncio.Event()
        """Set whenever the worker found nothing left to do (tests and graceful shutdown wait on it)."""

    async def _agent_model(self, agent: AgentConfig, org_id: str) -> LanguageModel:
        names = secret_names(agent)
        found = await self.secrets(org_id, names) if self.secrets is not None and names else {}
        return await stack_model(agent, found)

    # --- asking ---------------------------------------------------------------------------------

    async def request(self, session: AsyncSession, call: Call) -> bool:
        """In the transaction that ends ``call``: ask for its analysis if its agent version wants one
        and the call was answered. The worker is woken once the transaction commits."""
        if call.started_at is None:
            return False
        config = await agent_config_of(session, call)
        if config is None or not config.analysis.enabled:
            return False
        await AnalysisRepository(session).request(call.id, call.org_id)
        event.listen(session.sync_session, "after_commit", lambda _s: self.wake(), once=True)
        return True

    def wake(self) -> None:
        self.idle.clear()
        self._wake.set()

    async def settle(self, within_s: float = 30.0) -> None:
        """Wait until the running worker has done every analysis asked for so far (tests, tools)."""
        await asyncio.wait_for(self.idle.wait(), within_s)

    async def rerun(self, org_id: str, call_id: str) -> AnalysisOut:
        """Analyse an ended call again with its agent version's current settings (an operator asked)."""
        async with self.db.session() as session:
            call = await CallRepository(session).get(call_id, org_id)
            if call is None:
                raise NotFound(f"no call {call_id!r}")
            if call.ended_at is None:
                raise ValueError(f"call {call_id} has not ended yet")
            config = await _config_of(session, call)
            if config is None or not config.analysis.enabled:
                raise ValueError(f"the agent version of call {call_id} asks for no analysis (analysis: …)")
            repo = AnalysisRepository(session)
            await repo.request(call.id, call.org_id)
            await repo.rerun(call.id)
            event.listen(session.sync_session, "after_commit", lambda _s: self.wake(), once=True)
            row = await repo.get(call.id)
            assert row is not None
            await session.refresh(row)
            return view(row)

    async def analyze_now(self, org_id: str, call_id: str) -> AnalysisOut:
        """Analyse an ended call again in this process and return the outcome (``parley calls analyze``).
        If another worker claims it first, what it shows now (running) is returned."""
        await self.rerun(org_id, call_id)
        await self.step(call_id)
        async with self.db.session() as session:
            row = await AnalysisRepository(session).get(call_id)
            assert row is not None
            return view(row)

    # --- working --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Work until cancelled: analyses as they are asked for, and every ``poll_s`` a look for more."""
        while True:
            try:
                while await self.step():
                    pass
            except Exception:  # the store is away: the next wake-up or poll tries again
                log.exception("post-call analysis worker failed; retrying")
            self.idle.set()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def step(self, call_id: str | None = None) -> bool:
        """Claim and do one analysis (of ``call_id`` only, if given); False when there was none to do."""
        async with self.db.session() as session:
            row = await AnalysisRepository(session).claim(
                lease_expired_before=utcnow() - self.lease, call_id=call_id
            )
            if row is None:
                return False
            call_id, attempt, last_error = row.call_id, row.attempts, row.error
            call = await CallRepository(session).get(call_id)
            assert call is not None  # the row cascades with its call
            unusable: str | None = None
            try:
                config = await _config_of(session, call)
            except UnusableAgentVersion as exc:  # in here it would undo the claim: recorded below
                config, unusable = None, str(exc)
            turns = await CallRepository(session).turns(call_id)
        if attempt > self.max_attempts:  # earlier tries died without a word (a worker killed mid-way)
            reason = last_error or "the analysis did not finish"
            await self._finish(
                call_id, AnalysisStatus.FAILED, error=f"{reason} (gave up after {attempt - 1} tries)"
            )
            return True
        lines = [Line("agent" if t.speaker == "agent" else "user", t.text) for t in turns if t.text.strip()]
        if unusable is not None:
            await self._finish(call_id, AnalysisStatus.FAILED, error=unusable)
        elif config is None or not config.analysis.enabled:
            await self._finish(
                call_id, AnalysisStatus.SKIPPED, error="the call's agent version asks for no analysis"
            )
        elif not any(line.speaker == "user" for line in lines):
            await self._finish(call_id, AnalysisStatus.SKIPPED, error="the caller said nothing")
        else:
            await self._analyze(call_id, call.org_id, config, lines, attempt)
        return True

    async def _analyze(
        self, call_id: str, org_id: str, config: AgentConfig, lines: list[Line], attempt: int
    ) -> None:
        try:
            llm = await self.models(config, org_id)
        except Exception as exc:  # a model that will not load (missing file, unknown key) is retried
            await self._failed_try(call_id, attempt, f"could not load the language model: {exc!r}")
            return
        try:
            result = await analyze(llm, config.analysis, lines)
        except AnalysisModelError as exc:
            await self._failed_try(call_id, attempt, str(exc))
            return
        except Exception as exc:  # a bug, not the model: another try fails the same way, so none is made
            log.exception("post-call analysis crashed", call_id=call_id, attempt=attempt)
            await self._finish(call_id, AnalysisStatus.FAILED, error=f"the analysis crashed: {exc!r}"[:2000])
            return
        await self._finish(call_id, AnalysisStatus.COMPLETED, result=result)

    async def _failed_try(self, call_id: str, attempt: int, reason: str) -> None:
        if attempt >= self.max_attempts:
            log.warning("post-call analysis failed", call_id=call_id, attempts=attempt, error=reason)
            await self._finish(call_id, AnalysisStatus.FAILED, error=reason)
            return
        log.info("post-call analysis will be tried again", call_id=call_id, attempt=attempt, error=reason)
        async with self.db.session() as session:
            await AnalysisRepository(session).note_failure(call_id, reason)

    async def _finish(
        self,
        call_id: str,
        status: AnalysisStatus,
        *,
        result: CallAnalysis | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"error": error}
        if result is not None:
            values.update(
                model=result.model[:128],
                summary=result.summary,
                structured_data=result.structured_data,
                success=result.success,
                success_reason=result.success_reason,
                errors=result.errors,
            )
        async with self.db.session() as session:
            repo = AnalysisRepository(session)
            await repo.finish(call_id, status, **values)
            row = await repo.get(call_id)
            call = await CallRepository(session).get(call_id)
            if row is None or call is None:
                return
            await session.refresh(row)
            if self.on_analyzed is not None:
                await self.on_analyzed(session, call.org_id, event_payload(call, view(row)))
