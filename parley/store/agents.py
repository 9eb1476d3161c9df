"""Agents and their immutable configuration versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import Agent, AgentVersion
from parley.store.queries import page_newest_first
from parley.store.types import new_id, utcnow

API = "api"
FILE = "file"
"""``Agent.source``: made through the API or the CLI, or the record of an operator's YAML/Python agent."""


class AgentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(
        self, org_id: str, name: str, config: dict[str, Any], description: str = "", *, source: str = API
    ) -> Agent:
        now = utcnow()
        agent = Agent(
            id=new_id("agent"),
            org_id=org_id,
            name=name,
            description=description,
            latest_version=1,
            source=source,
            created_at=now,
            updated_at=now,
        )
        self.session.add(agent)
        await self.session.flush()
        self.session.add(
            AgentVersion(id=new_id("agv"), agent_id=agent.id, version=1, config=config, created_at=now)
        )
        await self.session.flush()
        return agent

    async def add_version(self, agent: Agent, config: dict[str, Any]) -> AgentVersion:
        """A new version becomes the latest; the row lock keeps concurrent updates from sharing a number."""
        locked = await self.session.scalar(
            select(Agent)
            .where(Agent.id == agent.id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        assert locked is not None
        number = locked.latest_version + 1
        version = AgentVersion(id=new_id("agv"), agent_id=agent.id, version=number, config=config)
        self.session.add(version)
        locked.latest_version = number
        locked.updated_at = utcnow()
        await self.session.flush()
        return version

    async def get(self, org_id: str, agent_id: str, *, include_deleted: bool = False) -> Agent | None:
        agent = await self.session.get(Agent, agent_id)
        if agent is None or agent.org_id != org_id or (agent.deleted_at is not None and not include_deleted):
            return None
        return agent

    async def by_name(self, org_id: str, name: str, *, source: str | None = None) -> Agent | None:
        """The agent of that name (of that ``source``, if given). An API agent and the record of a file
        agent may share a name (the file came later): the API's one is meant."""
        statement = select(Agent).where(
            Agent.org_id == org_id, Agent.name == name, Agent.deleted_at.is_(None)
        )
        if source is not None:
            statement = statement.where(Agent.source == source)
        return await self.session.scalar(
            statement.order_by(case((Agent.source == API, 0), else_=1), Agent.created_at.desc()).limit(1)
        )

    async def by_ref(self, org_id: str, ref: str) -> Agent | None:
        """An agent by id or, failing that, by name (what people type on the command line)."""
        return await self.get(org_id, ref) or await self.by_name(org_id, ref)

    async def version(self, agent_id: str, number: int | None = None) -> AgentVersion | None:
        statement = select(AgentVersion).where(AgentVersion.agent_id == agent_id)
        if number is None:
            statement = statement.order_by(AgentVersion.version.desc()).limit(1)
        else:
            statement = statement.where(AgentVersion.version == number)
        return await self.session.scalar(statement)

    async def version_by_id(self, version_id: str) -> AgentVersion | None:
        return await self.session.get(AgentVersion, version_id)

    async def versions(self, agent_id: str) -> list[AgentVersion]:
        result = await self.session.scalars(
            select(AgentVersion).where(AgentVersion.agent_id == agent_id).order_by(AgentVersion.version)
        )
        return list(result.all())

    async def page(self, org_id: str, limit: int, cursor: str | None) -> tuple[list[Agent], str | None]:
        statement = select(Agent).where(Agent.org_id == org_id, Agent.deleted_at.is_(None))
        return await page_newest_first(self.session, statement, Agent.created_at, Agent.id, limit, cursor)

    async def count(self, org_id: str) -> int:
        total = await self.session.scalar(
            select(func.count()).select_from(Agent).where(Agent.org_id == org_id, Agent.deleted_at.is_(None))
        )
        return int(total or 0)

    async def delete(self, agent: Agent) -> None:
        """Soft delete: calls keep pointing at the versions they ran with. Refused (``AgentInUse``) while
        a phone number or a business still routes to the agent: its calls would be rejected unrecorded."""
        from parley.store.agent_use import refuse_if_in_use

        await refuse_if_in_use(self.session, agent)
        agent.deleted_at = utcnow()
        agent.updated_at = agent.deleted_at
