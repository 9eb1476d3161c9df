"""Artifacts as files under one folder (the default; fine for a single machine)."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from parley.artifacts.base import ArtifactInfo, check_key


class LocalArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    async def put_file(
        self, key: str, path: Path, content_type: str = "application/octet-stream", *, move: bool = False
    ) -> ArtifactInfo:
        target = self._path(key)
        await asyncio.to_thread(_place, path, target, move)
        return _info(key, target)

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> ArtifactInfo:
        target = self._path(key)

        def write() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as tmp:
                tmp.write(data)
            os.replace(tmp.name, target)

        await asyncio.to_thread(write)
        return _info(key, target)

    async def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise FileNotFoundError(f"no artifact {key!r}")
        return await asyncio.to_thread(path.read_bytes)

    async def info(self, key: str) -> ArtifactInfo | None:
        path = self._path(key)
        return _info(key, path) if path.is_file() else None

    async def url(self, key: str, expires_in: timedelta = timedelta(hours=1)) -> str | None:
        return None  # served by the API from local_path()

    async def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    async def list_artifacts(self, prefix: str = "") -> list[ArtifactInfo]:
        def scan() -> list[ArtifactInfo]:
            if not self.root.is_dir():
                return []
            found = []
            for path in self.root.rglob("*"):
                key = path.relative_to(self.root).as_posix()
                if path.is_file() and key.startswith(prefix) and not path.name.startswith(".tmp"):
                    found.append(_info(key, path))
            return sorted(found, key=lambda i: i.key)

        return await asyncio.to_thread(scan)

    async def purge_older_than(self, age: timedelta, prefix: str = "") -> int:
        cutoff = datetime.now(UTC) - age
        old = [i for i in await self.list_artifacts(prefix) if i.modified < cutoff]
        for item in old:
            await self.delete(item.key)
        return len(old)


def _place(source: Path, target: Path, move: bool) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if move:
        shutil.move(source, target)
    else:
        tmp = target.with_name(f".tmp-{target.name}")
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)


def _info(key: str, path: Path) -> ArtifactInfo:
    stat = path.stat()
    return ArtifactInfo(key, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
