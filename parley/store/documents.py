"""Agents' knowledge documents (the extracted text, one row each)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import AgentDocument
from parley.store.types import new_id, utcnow


class DocumentRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        org_id: str,
        agent_id: str,
        *,
        name: str,
        content_type: str,
        text: str,
        size_bytes: int,
        pages: int | None,
        sha256: str,
    ) -> AgentDocument:
        document = AgentDocument(
            id=new_id("doc"),
            org_id=org_id,
            agent_id=agent_id,
            name=name,
            content_type=content_type,
            text=text,
            size_bytes=size_bytes,
            pages=pages,
            words=len(text.split()),
            sha256=sha256,
            created_at=utcnow(),
        )
        self.session.add(document)
        await self.session.flush()
        return document

    async def for_agent(self, org_id: str, agent_id: str) -> list[AgentDocument]:
        result = await self.session.scalars(
            select(AgentDocument)
            .where(AgentDocument.org_id == org_id, AgentDocument.agent_id == agent_id)
            .order_by(AgentDocument.created_at, AgentDocument.id)
        )
        return list(result.all())

    async def fingerprint(self, org_id: str, agent_id: str) -> tuple[tuple[str, str], ...]:
        """(id, sha256) of each document, oldest first: cheap to read, changes whenever the set does."""
        rows = await self.session.execute(
            select(AgentDocument.id, AgentDocument.sha256)
            .where(AgentDocument.org_id == org_id, AgentDocument.agent_id == agent_id)
            .order_by(AgentDocument.created_at, AgentDocument.id)
        )
        return tuple((row[0], row[1]) for row in rows.all())

    async def totals(self, org_id: str, agent_id: str) -> tuple[int, int]:
        """How many documents the agent has, and their total extracted characters."""
        row = (
            await self.session.execute(
                select(func.count(), func.coalesce(func.sum(func.length(AgentDocument.text)), 0)).where(
                    AgentDocument.org_id == org_id, AgentDocument.agent_id == agent_id
                )
            )
        ).one()
        return int(row[0]), int(row[1])

    async def get(self, org_id: str, agent_id: str, document_id: str) -> AgentDocument | None:
        document = await self.session.get(AgentDocument, document_id)
        if document is None or document.org_id != org_id or document.agent_id != agent_id:
            return None
        return document

    async def by_name(self, org_id: str, agent_id: str, name: str) -> AgentDocument | None:
        return await self.session.scalar(
            select(AgentDocument).where(
                AgentDocument.org_id == org_id, AgentDocument.agent_id == agent_id, AgentDocument.name == name
            )
        )

    async def delete(self, document: AgentDocument) -> None:
        await self.session.delete(document)
        await self.session.flush()
