"""Where large files (call recordings, exports) live: a local folder by default, or S3-compatible storage."""

from __future__ import annotations

from parley.artifacts.base import ArtifactInfo, ArtifactStore
from parley.config import Settings


def artifact_store(settings: Settings) -> ArtifactStore:
    """S3 when a bucket is configured, else ``<data_dir>/artifacts``."""
    if settings.s3_bucket:
        from parley.artifacts.s3 import S3ArtifactStore

        secret = settings.s3_secret_access_key.get_secret_value() if settings.s3_secret_access_key else None
        return S3ArtifactStore(
            settings.s3_bucket,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            prefix=settings.s3_prefix,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret,
        )
    from parley.artifacts.local import LocalArtifactStore

    return LocalArtifactStore(settings.data_dir / "artifacts")


__all__ = ["ArtifactInfo", "ArtifactStore", "artifact_store"]
