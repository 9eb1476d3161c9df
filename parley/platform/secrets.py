"""Organization secrets: encrypted at rest (Fernet), listed by name only, never returned.

Agents refer to a secret by name (``llm.options.api_key_secret``); the value is decrypted only when a
session's engines are built. The key is the operator's ``PARLEY_SECRETS_KEY``, or one generated once into
``data_dir/secrets.key`` with owner-only permissions. Losing the key loses the secrets, not the calls.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import structlog
from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel

from parley.config import Settings
from parley.store.db import Database
from parley.store.secrets import SecretRepository

log = structlog.get_logger("parley.secrets")


class SecretOut(BaseModel):
    """A secret as the API shows it: its name and dates, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


class SecretUnreadable(RuntimeError):
    """A stored secret cannot be decrypted with this server's key (the key changed)."""


def _load_key(settings: Settings) -> bytes:
    if settings.secrets_key is not None:
        return settings.secrets_key.get_secret_value().encode()
    path = Path(settings.data_dir) / "secrets.key"
    if path.is_file():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    # O_EXCL: two processes starting at once must not write two different keys.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as file:
        file.write(key)
    log.info("generated the key for organization secrets", path=str(path))
    return key


def secrets_key(settings: Settings) -> bytes:
    """The server's secrets key (generated on first use): other server keys are derived from it."""
    return _load_key(settings)


class SecretService:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._key: Fernet | None = None

    @property
    def _fernet(self) -> Fernet:
        """Made on first use, so a server whose organizations keep no secrets never needs a key."""
        if self._key is None:
            self._key = Fernet(_load_key(self.settings))
        return self._key

    def seal(self, value: str) -> str:
        """Encrypt a value kept elsewhere than ``org_secrets`` (webhook endpoints' signing secrets)."""
        return self._fernet.encrypt(value.encode()).decode()

    def unseal(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise SecretUnreadable("a stored secret cannot be decrypted with this server's key") from exc

    async def put(self, org_id: str, name: str, value: str) -> SecretOut:
        ciphertext = self._fernet.encrypt(value.encode()).decode()
        async with self.db.session() as session:
            row = await SecretRepository(session).put(org_id, name, ciphertext)
            return SecretOut(name=row.name, created_at=row.created_at, updated_at=row.updated_at)

    async def all(self, org_id: str) -> list[SecretOut]:
        async with self.db.session() as session:
            rows = await SecretRepository(session).all(org_id)
        return [SecretOut(name=r.name, created_at=r.created_at, updated_at=r.updated_at) for r in rows]

    async def delete(self, org_id: str, name: str) -> bool:
        async with self.db.session() as session:
            return await SecretRepository(session).delete(org_id, name)

    async def resolve(self, org_id: str, names: Iterable[str]) -> dict[str, str]:
        """The named secrets' values (those that exist), for building a session's engines."""
        async with self.db.session() as session:
            rows = await SecretRepository(session).named(org_id, names)
        values: dict[str, str] = {}
        for row in rows:
            try:
                values[row.name] = self._fernet.decrypt(row.ciphertext.encode()).decode()
            except InvalidToken as exc:
                raise SecretUnreadable(
                    f"secret {row.name!r} cannot be decrypted with this server's PARLEY_SECRETS_KEY"
                ) from exc
        return values
