"""Who may connect a call (single-use session tokens, public access) and organization secrets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Agent options that stay agent settings (frozen here: later code may allow more). Everything else that
# older versions stored (programs, paths, URLs, sizes, API keys in clear) is removed from every version.
_ALLOWED = {
    "vad": {"silero": set(), "webrtc": {"aggressiveness"}, "energy": {"threshold_dbfs", "softness_db"}},
    "asr": {
        "whisper": {"model", "language", "beam_size", "initial_prompt", "hotwords"},
        "scripted": {"lines", "seconds_per_word"},
    },
    "llm": {
        "llamacpp": {"seed"},
        "openai": {"model", "api_key_secret"},
        "scripted": {"rules", "default_reply", "token_delay"},
    },
    "tts": {
        "piper": {"length_scale", "volume", "speaker_id"},
        "espeak": {"voice", "rate_wpm"},
        "tone": {"sample_rate", "ms_per_char", "chunk_ms", "frequency", "amplitude"},
    },
}


def _scrub(config: dict[str, Any]) -> bool:
    changed = False
    for role, providers in _ALLOWED.items():
        settings = config.get(role)
        if not isinstance(settings, dict) or not isinstance(settings.get("options"), dict):
            continue
        allowed = providers.get(str(settings.get("provider")), set())
        kept = {k: v for k, v in settings["options"].items() if k in allowed}
        if kept != settings["options"]:
            settings["options"] = kept
            changed = True
    return changed


def upgrade() -> None:
    versions = sa.table("agent_versions", sa.column("id", sa.String), sa.column("config", JSON))
    bind = op.get_bind()
    for row in bind.execute(sa.select(versions.c.id, versions.c.config)).all():
        config = row.config if isinstance(row.config, dict) else json.loads(row.config)
        if _scrub(config):
            bind.execute(versions.update().where(versions.c.id == row.id).values(config=config))
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("connect_token_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("access", sa.String(16), nullable=True))
        batch.add_column(sa.Column("client_ip", sa.String(64), nullable=True))
        batch.create_unique_constraint(op.f("uq_calls_connect_token_hash"), ["connect_token_hash"])
    op.create_table(
        "org_secrets",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_org_secrets_org_id")),
    )


def downgrade() -> None:
    op.drop_table("org_secrets")
    with op.batch_alter_table("calls") as batch:
        batch.drop_constraint(op.f("uq_calls_connect_token_hash"), type_="unique")
        batch.drop_column("client_ip")
        batch.drop_column("access")
        batch.drop_column("connect_token_hash")
