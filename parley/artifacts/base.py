"""The artifact store interface: put a file under a key, get it back, hand out a download link, expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    key: str
    size: int
    modified: datetime


class ArtifactStore(Protocol):
    async def put_file(
        self, key: str, path: Path, content_type: str = "application/octet-stream", *, move: bool = False
    ) -> ArtifactInfo:
        """Store the file at ``path`` under ``key``; with ``move`` the local file may be consumed."""
        ...

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> ArtifactInfo: ...

    async def get_bytes(self, key: str) -> bytes: ...

    async def info(self, key: str) -> ArtifactInfo | None: ...

    def local_path(self, key: str) -> Path | None:
        """The file on this machine, when the store keeps one (a server can then send it directly)."""
        ...

    async def url(self, key: str, expires_in: timedelta = timedelta(hours=1)) -> str | None:
        """A time-limited download link, when the backend can make one."""
        ...

    async def delete(self, key: str) -> None: ...

    async def list_artifacts(self, prefix: str = "") -> list[ArtifactInfo]: ...

    async def purge_older_than(self, age: timedelta, prefix: str = "") -> int:
        """Retention: delete artifacts last modified more than ``age`` ago; returns how many."""
        ...


def check_key(key: str) -> str:
    """Keys are relative paths without ``..``, so no key can escape its store."""
    parts = key.split("/")
    if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in key:
        raise ValueError(f"invalid artifact key {key!r}")
    return key
