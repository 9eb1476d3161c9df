"""Organizations and their API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.store.models import ApiKey, Organization
from parley.store.types import new_id, utcnow

KEY_PREFIX = "pk_"
_TOUCH_EVERY = timedelta(minutes=1)


def hash_key(key: str) -> str:
    """Keys are long random strings, so a fast unsalted hash is enough and allows lookup by hash."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key as created: ``secret`` is shown once and never stored."""

    row: ApiKey
    secret: str


class TenantRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def org_by_slug(self, slug: str) -> Organization | None:
        return await self.session.scalar(select(Organization).where(Organization.slug == slug))

    async def get_org(self, org_id: str) -> Organization | None:
        return await self.session.get(Organization, org_id)

    async def ensure_org(self, slug: str, name: str | None = None) -> Organization:
        """The organization with this slug, created if missing (safe against a concurrent creator)."""
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,79}", slug):
            raise ValueError(f"invalid organization slug {slug!r}: use lowercase letters, digits, - and _")
        found = await self.org_by_slug(slug)
        if found is not None:
            return found
        org = Organization(id=new_id("org"), slug=slug, name=name or slug)
        try:
            async with self.session.begin_nested():
                self.session.add(org)
        except IntegrityError:
            found = await self.org_by_slug(slug)
            assert found is not None
            return found
        return org

    async def create_key(self, org_id: str, name: str = "") -> NewKey:
        secret = KEY_PREFIX + secrets.token_urlsafe(30)
        row = ApiKey(
            id=new_id("key"), org_id=org_id, name=name, prefix=secret[:10], key_hash=hash_key(secret)
        )
        self.session.add(row)
        await self.session.flush()
        return NewKey(row, secret)

    async def verify_key(self, secret: str) -> ApiKey | None:
        """The live key with this secret, if any; its last-used time is refreshed at most once a minute."""
        row = await self.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
        if row is None or row.revoked_at is not None:
            return None
        now = utcnow()
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            row.last_used_at = now
        return row

    async def list_keys(self, org_id: str) -> list[ApiKey]:
        result = await self.session.scalars(
            select(ApiKey).where(ApiKey.org_id == org_id).order_by(ApiKey.created_at)
        )
        return list(result.all())

    async def revoke_key(self, org_id: str, key_id: str) -> bool:
        row = await self.session.get(ApiKey, key_id)
        if row is None or row.org_id != org_id:
            return False
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return True
