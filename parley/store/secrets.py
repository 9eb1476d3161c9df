"""Organization secrets as stored: ciphertext only (``parley.platform.secrets`` encrypts and decrypts)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import OrgSecret
from parley.store.types import new_id, utcnow


class SecretRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def put(self, org_id: str, name: str, ciphertext: str) -> OrgSecret:
        found = await self.session.scalar(
            select(OrgSecret).where(OrgSecret.org_id == org_id, OrgSecret.name == name)
        )
        if found is None:
            found = OrgSecret(id=new_id("sec"), org_id=org_id, name=name, ciphertext=ciphertext)
            self.session.add(found)
        else:
            found.ciphertext = ciphertext
            found.updated_at = utcnow()
        await self.session.flush()
        return found

    async def all(self, org_id: str) -> list[OrgSecret]:
        rows = await self.session.scalars(
            select(OrgSecret).where(OrgSecret.org_id == org_id).order_by(OrgSecret.name)
        )
        return list(rows)

    async def named(self, org_id: str, names: Iterable[str]) -> list[OrgSecret]:
        wanted = list(names)
        if not wanted:
            return []
        rows = await self.session.scalars(
            select(OrgSecret).where(OrgSecret.org_id == org_id, OrgSecret.name.in_(wanted))
        )
        return list(rows)

    async def delete(self, org_id: str, name: str) -> bool:
        result = await self.session.execute(
            delete(OrgSecret).where(OrgSecret.org_id == org_id, OrgSecret.name == name)
        )
        return bool(getattr(result, "rowcount", 0))
