"""Artifact stores: a local folder, and S3 (against moto's standalone server)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from parley.artifacts.local import LocalArtifactStore
from parley.artifacts.s3 import MIB, S3ArtifactStore
from tests.store import services


@pytest.fixture
async def s3(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[S3ArtifactStore]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    store = S3ArtifactStore(
        f"parley-{uuid.uuid4().hex[:8]}",
        endpoint_url=services.moto_url(),
        prefix="prod",
        multipart_threshold=5 * MIB,
        part_size=5 * MIB,
    )
    await store.ensure_bucket()
    yield store


async def test_a_large_file_goes_up_in_parts_and_comes_back_whole(
    s3: S3ArtifactStore, tmp_path: Path
) -> None:
    data = os.urandom(11 * MIB)
    path = tmp_path / "big.wav"
    path.write_bytes(data)
    info = await s3.put_file("recordings/big.wav", path, "audio/wav", move=True)
    assert info.size == len(data) and not path.exists()
    assert (await s3.etag("recordings/big.wav")).endswith("-3"), "three parts of at most 5 MiB"
    assert await s3.get_bytes("recordings/big.wav") == data


async def test_presigned_links_download_and_say_when_they_expire(s3: S3ArtifactStore) -> None:
    await s3.put_bytes("recordings/a.wav", b"RIFF....", "audio/wav")
    url = await s3.url("recordings/a.wav", timedelta(minutes=10))
    assert url is not None
    assert parse_qs(urlparse(url).query)["X-Amz-Expires"] == ["600"]
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200 and response.content == b"RIFF...."
    assert "/prod/recordings/a.wav" in urlparse(url).path, "keys live under the store's prefix"


async def test_s3_retention_rule_and_purge(s3: S3ArtifactStore) -> None:
    await s3.set_retention(30, prefix="recordings/")
    [rule] = await s3.retention()
    assert rule["Expiration"] == {"Days": 30} and rule["Filter"] == {"Prefix": "prod/recordings/"}
    await s3.put_bytes("recordings/old.wav", b"1")
    await s3.put_bytes("exports/keep.csv", b"2")
    assert await s3.purge_older_than(timedelta(days=1), prefix="recordings/") == 0
    await asyncio.sleep(1.1)  # S3 times have one-second resolution
    assert await s3.purge_older_than(timedelta(seconds=1), prefix="recordings/") == 1
    assert [i.key for i in await s3.list_artifacts()] == ["exports/keep.csv"]
    assert await s3.info("recordings/old.wav") is None
    with pytest.raises(FileNotFoundError):
        await s3.get_bytes("recordings/old.wav")


async def test_local_store_round_trip_and_retention(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    source = tmp_path / "call.wav"
    source.write_bytes(b"abc")
    await store.put_file("recordings/call.wav", source)
    await store.put_bytes("recordings/older.wav", b"defg")
    assert source.exists(), "copied unless asked to move"
    assert await store.get_bytes("recordings/call.wav") == b"abc"
    assert store.local_path("recordings/call.wav") == tmp_path / "artifacts" / "recordings" / "call.wav"
    assert await store.url("recordings/call.wav") is None, "served by the API instead"
    old = tmp_path / "artifacts" / "recordings" / "older.wav"
    stamp = time.time() - 3 * 86400
    os.utime(old, (stamp, stamp))
    assert await store.purge_older_than(timedelta(days=2)) == 1
    assert [i.key for i in await store.list_artifacts("recordings/")] == ["recordings/call.wav"]
    for bad in ("../escape", "/etc/passwd", "a//b", ""):
        with pytest.raises(ValueError):
            await store.put_bytes(bad, b"x")
