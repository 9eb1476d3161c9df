"""API-key authentication: ``Authorization: Bearer pk_…`` or ``X-API-Key: pk_…``.

A key belongs to one organization and every route sees only that organization's data. Keys are
stored hashed (``parley keys create`` prints a new one once); ``PARLEY_API_KEY`` is also accepted,
for the default organization, so a fresh install can be used before any key exists.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from parley.platform.runtime import Platform
from parley.store.tenants import TenantRepository

bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="an API key")


@dataclass(frozen=True, slots=True)
class Principal:
    org_id: str
    key_id: str | None


def get_platform(request: Request) -> Platform:
    """The process's ``Platform``, which the app keeps in ``app.state.platform``."""
    platform = getattr(request.app.state, "platform", None)
    if platform is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the platform store is not available")
    assert isinstance(platform, Platform)
    return platform


PlatformDep = Annotated[Platform, Depends(get_platform)]

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def require_api_key(
    platform: PlatformDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    header_key: Annotated[str | None, Security(api_key_header)],
) -> Principal:
    secret = credentials.credentials if credentials is not None else header_key
    if not secret:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API key is required", headers=_UNAUTHORIZED)
    configured = platform.settings.api_key
    if configured is not None and hmac.compare_digest(
        secret.encode(), configured.get_secret_value().encode()
    ):
        return Principal(platform.default_org_id, None)
    async with platform.db.session() as session:
        key = await TenantRepository(session).verify_key(secret)
    if key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers=_UNAUTHORIZED)
    return Principal(key.org_id, key.id)


Auth = Annotated[Principal, Depends(require_api_key)]
