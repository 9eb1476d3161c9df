"""Which stored agents a live session can reach, read-only: the voice page's list and ``start {agent}``.

Agents made through the API or the CLI live in the store, per organization. A live client names one
by its name (looked up in one organization) or by its id (unguessable, so it also names the
organization). The records that file agents' calls are filed under are not offered: those agents are
served from their files (a Python agent's tools are code, which no record holds). Whether the client
may then talk to an agent is the caller's decision (``public``, or a session token); this module only
finds agents and reads their latest configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.engine.agent import AgentConfig
from parley.store.agents import API, AgentRepository
from parley.store.db import Database
from parley.store.models import Agent, AgentVersion

log = structlog.get_logger("parley.platform.directory")

MAX_LISTED = 200
"""At most this many stored agents are offered in a list (the voice page's select, an error message)."""


@dataclass(frozen=True, slots=True)
class StoredAgent:
    """A stored agent at its latest version (a call started from it pins that version itself)."""

    id: str
    org_id: str
    name: str
    description: str
    version: int
    config: AgentConfig

    @property
    def public(self) -> bool:
        return self.config.public


class AgentDirectory:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, org_id: str, ref: str) -> StoredAgent | None:
        """The organization's agent with this id or, failing that, this name (not deleted)."""
        async with self.db.session() as session:
            agent = await session.get(Agent, ref)
            if agent is None or agent.org_id != org_id or not _offered(agent):
                agent = await AgentRepository(session).by_name(org_id, ref, source=API)
            return None if agent is None else await _latest(session, agent)

    async def find_by_id(self, agent_id: str) -> StoredAgent | None:
        """An agent of any organization by its id: ids are unguessable, so knowing one is the link a
        tenant shares for its public agent."""
        async with self.db.session() as session:
            agent = await session.get(Agent, agent_id)
            if agent is None or not _offered(agent):
                return None
            return await _latest(session, agent)

    async def public(self, org_id: str) -> list[StoredAgent]:
        """The organization's agents anyone may talk to, by name (at most ``MAX_LISTED``)."""
        async with self.db.session() as session:
            rows = await session.execute(
                select(Agent, AgentVersion)
                .join(
                    AgentVersion,
                    (AgentVersion.agent_id == Agent.id) & (AgentVersion.version == Agent.latest_version),
                )
                .where(Agent.org_id == org_id, Agent.deleted_at.is_(None), Agent.source == API)
                .order_by(Agent.name)
            )
            found = []
            for agent, version in rows:
                stored = _stored(agent, version)
                if stored is not None and stored.public:
                    found.append(stored)
                    if len(found) >= MAX_LISTED:
                        break
            return found


def _offered(agent: Agent) -> bool:
    return agent.deleted_at is None and agent.source == API


async def _latest(session: AsyncSession, agent: Agent) -> StoredAgent | None:
    version = await session.scalar(
        select(AgentVersion).where(
            AgentVersion.agent_id == agent.id, AgentVersion.version == agent.latest_version
        )
    )
    return None if version is None else _stored(agent, version)


def _stored(agent: Agent, version: AgentVersion) -> StoredAgent | None:
    try:
        config = AgentConfig.model_validate(version.config)
    except ValidationError as exc:  # a version this release no longer reads: not offered, but said
        log.warning(
            "a stored agent version no longer validates",
            agent_id=agent.id,
            version=version.version,
            error=str(exc),
        )
        return None
    return StoredAgent(agent.id, agent.org_id, agent.name, agent.description, version.version, config)
