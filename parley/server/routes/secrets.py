"""``/v1/secrets``: an organization's secrets (API keys its agents use), write-only.

A value goes in once and is never shown again: agents refer to it by name (``api_key_secret``).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from parley.inputs import SafeStr
from parley.platform.secrets import SecretOut
from parley.server.auth import Auth, PlatformDep

router = APIRouter(prefix="/v1/secrets", tags=["secrets"])

SecretNameP = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="the secret's name")]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _header_safe(value: str) -> str:
    """A secret goes into HTTP headers (webhook tools) and provider clients, where a line break is
    refused with the value quoted in the error. The newline an ``echo`` or a file leaves at the end is
    dropped; one inside the value, or any other control character, is refused here, by name only."""
    value = value.strip()
    if not value:
        raise PydanticCustomError("blank_secret", "a secret cannot be blank")
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "control_character", "control characters (such as a line break) are not allowed in a secret"
        )
    return value


class SecretIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Annotated[SafeStr, AfterValidator(_header_safe)] = Field(min_length=1, max_length=4096)


@router.get("", response_model=list[SecretOut])
async def list_secrets(principal: Auth, platform: PlatformDep) -> list[SecretOut]:
    """The organization's secrets by name; values are never returned."""
    return await platform.secrets.all(principal.org_id)


@router.put("/{name}", response_model=SecretOut)
async def put_secret(name: SecretNameP, body: SecretIn, principal: Auth, platform: PlatformDep) -> SecretOut:
    """Store (or replace) a secret; it is encrypted at rest and only its name is ever shown."""
    return await platform.secrets.put(principal.org_id, name, body.value)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
async def delete_secret(name: SecretNameP, principal: Auth, platform: PlatformDep) -> Response:
    if not await platform.secrets.delete(principal.org_id, name):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no secret {name!r}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
