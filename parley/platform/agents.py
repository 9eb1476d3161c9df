"""Agents as named, versioned configuration. Every change to the configuration is a new version; a call
records the version it ran with, so what an agent was told at the time of a call is never lost."""

from __future__ import annotations

from typing import Any

from parley.engine.agent import AgentConfig
from parley.platform.schemas import AgentCreate, AgentOut, AgentUpdate, AgentVersionOut, Page
from parley.stack import ProviderError, check_operator_policy
from parley.store.agents import AgentRepository
from parley.store.db import Database
from parley.store.models import Agent, AgentVersion

__all__ = ["AgentService", "Conflict", "NotFound", "ProviderError"]


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def _stored(config: AgentConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def agent_out(agent: Agent, version: AgentVersion) -> AgentOut:
    return AgentOut(
        id=agent.id,
        name=agent.name,
        description=agent.description,
        version=version.version,
        config=AgentConfig.model_validate(version.config),
        created_at=agent.created_at,
        updated_at=agent.updated_at,
    )


def version_out(version: AgentVersion) -> AgentVersionOut:
    return AgentVersionOut(
        agent_id=version.agent_id,
        version=version.version,
        config=AgentConfig.model_validate(version.config),
        created_at=version.created_at,
    )


class AgentService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, org_id: str, request: AgentCreate) -> AgentOut:
        check_operator_policy(request.config)
        name = request.name or request.config.name
        config = request.config.model_copy(update={"name": name})
        async with self.db.session() as session:
            repo = AgentRepository(session)
            if await repo.by_name(org_id, name) is not None:
                raise Conflict(f"an agent named {name!r} already exists")
            agent = await repo.create(org_id, name, _stored(config), request.description)
            version = await repo.version(agent.id)
            assert version is not None
            return agent_out(agent, version)

    async def _find(self, repo: AgentRepository, org_id: str, ref: str) -> Agent:
        """An agent by id, or by name (what people type on the command line)."""
        agent = await repo.get(org_id, ref) or await repo.by_name(org_id, ref)
        if agent is None:
            raise NotFound(f"no agent {ref!r}")
        return agent

    async def get(self, org_id: str, ref: str, version: int | None = None) -> AgentOut:
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            found = await repo.version(agent.id, version)
            if found is None:
                raise NotFound(f"agent {ref!r} has no version {version}")
            return agent_out(agent, found)

    async def versions(self, org_id: str, ref: str) -> list[AgentVersionOut]:
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            return [version_out(v) for v in await repo.versions(agent.id)]

    async def page(self, org_id: str, limit: int = 50, cursor: str | None = None) -> Page[AgentOut]:
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agents, next_cursor = await repo.page(org_id, limit, cursor)
            out = []
            for agent in agents:
                version = await repo.version(agent.id, agent.latest_version)
                assert version is not None
                out.append(agent_out(agent, version))
            return Page[AgentOut](data=out, next_cursor=next_cursor)

    async def update(self, org_id: str, ref: str, request: AgentUpdate) -> AgentOut:
        if request.config is not None:
            check_operator_policy(request.config)
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await self._find(repo, org_id, ref)
            if request.name is not None and request.name != agent.name:
                if await repo.by_name(org_id, request.name) is not None:
                    raise Conflict(f"an agent named {request.name!r} already exists")
                agent.name = request.name
            if request.description is not None:
                agent.description = request.description
            version = await repo.version(agent.id, agent.latest_version)
            assert version is not None
            if request.config is not None or request.name is not None:
                current = AgentConfig.model_validate(version.config)
                config = (request.config or current).model_copy(update={"name": agent.name})
                if config != current:
                    version = await repo.add_version(agent, _stored(config))
            return agent_out(agent, version)

    async def delete(self, org_id: str, ref: str) -> None:
        async with self.db.session() as session:
            repo = AgentRepository(session)
            await repo.delete(await self._find(repo, org_id, ref))

    async def ensure(self, org_id: str, config: AgentConfig) -> tuple[Agent, AgentVersion]:
        """The agent named like ``config``, at a version equal to ``config`` (created as needed):
        how a call run from a YAML file (``parley simulate``) is filed under a stored agent."""
        async with self.db.session() as session:
            repo = AgentRepository(session)
            agent = await repo.by_name(org_id, config.name)
            if agent is None:
                agent = await repo.create(org_id, config.name, _stored(config))
                version = await repo.version(agent.id)
                assert version is not None
                return agent, version
            latest = await repo.version(agent.id, agent.latest_version)
            assert latest is not None
            if AgentConfig.model_validate(latest.config) == config:
                return agent, latest
            return agent, await repo.add_version(agent, _stored(config))
