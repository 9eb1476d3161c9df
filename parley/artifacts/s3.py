"""Artifacts in any S3-compatible bucket (AWS S3, MinIO, Ceph, R2 …) through boto3.

Large files go up as multipart uploads (boto3's managed transfer splits them into parts and sends
parts in parallel); downloads are handed out as presigned URLs that expire; retention is both a bucket
lifecycle rule (the server expires objects by age) and an explicit purge for servers without one.
boto3 blocks, so every call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import ClientError

from parley.artifacts.base import ArtifactInfo, check_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024


class S3ArtifactStore:
    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        prefix: str = "",
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = 16 * MIB,
        part_size: int = 8 * MIB,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=Config(
                signature_version="s3v4",
                retries={"max_attempts": 5, "mode": "standard"},
                s3={"addressing_style": "path"},
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=part_size, max_concurrency=4
        )

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    async def ensure_bucket(self) -> None:
        def create() -> None:
            try:
                self.client.head_bucket(Bucket=self.bucket)
            except ClientError:
                self.client.create_bucket(Bucket=self.bucket)

        await asyncio.to_thread(create)

    def local_path(self, key: str) -> Path | None:
        return None

    async def put_file(
        self, key: str, path: Path, content_type: str = "application/octet-stream", *, move: bool = False
    ) -> ArtifactInfo:
        await asyncio.to_thread(
            self.client.upload_file,
            str(path),
            self.bucket,
            self._key(key),
            ExtraArgs={"ContentType": content_type},
            Config=self.transfer,
        )
        if move:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        info = await self.info(key)
        assert info is not None
        return info

    async def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> ArtifactInfo:
        await asyncio.to_thread(
            self.client.put_object,
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ContentType=content_type,
        )
        info = await self.info(key)
        assert info is not None
        return info

    async def get_bytes(self, key: str) -> bytes:
        def read() -> bytes:
            try:
                return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
            except ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404"):
                    raise FileNotFoundError(f"no artifact {key!r}") from exc
                raise

        return await asyncio.to_thread(read)

    async def info(self, key: str) -> ArtifactInfo | None:
        def head() -> ArtifactInfo | None:
            try:
                meta = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as exc:
                if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                    return None
                raise
            return ArtifactInfo(key, int(meta["ContentLength"]), meta["LastModified"].astimezone(UTC))

        return await asyncio.to_thread(head)

    async def etag(self, key: str) -> str:
        """The object's ETag (a multipart upload's ends in ``-<number of parts>``)."""
        meta = await asyncio.to_thread(self.client.head_object, Bucket=self.bucket, Key=self._key(key))
        return meta["ETag"].strip('"')

    async def url(self, key: str, expires_in: timedelta = timedelta(hours=1)) -> str | None:
        return await asyncio.to_thread(
            self.client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": self._key(key)},
            ExpiresIn=int(expires_in.total_seconds()),
        )

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    async def list_artifacts(self, prefix: str = "") -> list[ArtifactInfo]:
        def scan() -> list[ArtifactInfo]:
            found: list[ArtifactInfo] = []
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found.append(
                        ArtifactInfo(
                            item["Key"][len(self.prefix) :],
                            int(item["Size"]),
                            item["LastModified"].astimezone(UTC),
                        )
                    )
            return found

        return await asyncio.to_thread(scan)

    async def purge_older_than(self, age: timedelta, prefix: str = "") -> int:
        cutoff = datetime.now(UTC) - age
        old = [self.prefix + i.key for i in await self.list_artifacts(prefix) if i.modified < cutoff]
        for start in range(0, len(old), 1000):  # DeleteObjects takes at most 1000 keys
            chunk: list[Any] = [{"Key": k} for k in old[start : start + 1000]]
            await asyncio.to_thread(
                self.client.delete_objects, Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True}
            )
        return len(old)

    async def set_retention(self, days: int, prefix: str = "") -> None:
        """A bucket lifecycle rule: the server deletes objects under ``prefix`` ``days`` after upload, and
        cleans up multipart uploads abandoned for a day."""
        rule: Any = {
            "ID": f"parley-retention-{prefix or 'all'}",
            "Status": "Enabled",
            "Filter": {"Prefix": self.prefix + prefix},
            "Expiration": {"Days": days},
            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
        }
        await asyncio.to_thread(
            self.client.put_bucket_lifecycle_configuration,
            Bucket=self.bucket,
            LifecycleConfiguration={"Rules": [rule]},
        )

    async def retention(self) -> list[dict[str, Any]]:
        def read() -> list[dict[str, Any]]:
            try:
                rules = self.client.get_bucket_lifecycle_configuration(Bucket=self.bucket)["Rules"]
            except ClientError as exc:
                if _code(exc) == "NoSuchLifecycleConfiguration":
                    return []
                raise
            return [dict(rule) for rule in rules]

        return await asyncio.to_thread(read)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
