"""One typed settings object for the whole process, read from ``PARLEY_*`` environment variables."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_file=".env", extra="ignore")

    # --- where things live -------------------------------------------------------------------------
    data_dir: Path = Field(Path(".parley"), description="SQLite file, recordings and other local data")
    model_cache: Path = Field(Path.home() / ".cache" / "parley" / "models",
                              description="models assembled or extracted from PyPI packages")

    # --- server and realtime sessions (live-voice issue) --------------------------------------------
    host: str = "127.0.0.1"
    port: int = 8000
    realtime_enabled: bool = True
    max_concurrent_sessions: int = Field(50, ge=1)
    session_idle_timeout_s: float = Field(120.0, gt=0)
    max_session_duration_s: float = Field(3600.0, gt=0)
    audio_sample_rate: int = Field(16000, description="PCM rate of the WebSocket audio protocol")
    audio_frame_ms: int = Field(20, description="outbound audio frame length")
    shutdown_grace_s: float = Field(10.0, ge=0)

    # --- store, timeline, artifacts (platform-memory issue) -----------------------------------------
    database_url: str | None = Field(None, description="SQLAlchemy async URL; default SQLite in data_dir")
    redis_url: str | None = Field(None, description="Redis for the timeline and queues; default in-process")
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
