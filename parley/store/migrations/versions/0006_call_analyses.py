"""Post-call analyses: one row per call, asked for when the call ends, filled in by a worker.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "call_analyses",
        sa.Column("call_id", sa.String(40), sa.ForeignKey("calls.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("requested_at", UTC, nullable=False),
        sa.Column("claimed_at", UTC, nullable=True),
        sa.Column("completed_at", UTC, nullable=True),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("structured_data", JSON, nullable=True),
        sa.Column("success", sa.Boolean(), nullable=True),
        sa.Column("success_reason", sa.Text(), nullable=True),
        sa.Column("errors", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index(op.f("ix_call_analyses_org_id"), "call_analyses", ["org_id"])
    op.create_index("ix_call_analyses_status_requested_at", "call_analyses", ["status", "requested_at"])


def downgrade() -> None:
    op.drop_index("ix_call_analyses_status_requested_at", table_name="call_analyses")
    op.drop_index(op.f("ix_call_analyses_org_id"), table_name="call_analyses")
    op.drop_table("call_analyses")
