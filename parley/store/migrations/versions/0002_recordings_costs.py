"""Recordings, usage and cost lines, invoices, and latency figures on calls.

Revision ID: 0002
Revises: 0001
Create Date: 2026-05-20
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("metrics", JSON, nullable=True))
    op.create_table(
        "recordings",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("call_id", sa.String(40), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column("artifact_key", sa.String(300), nullable=False),
        sa.Column("content_type", sa.String(64), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("sample_rate", sa.Integer(), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finalized_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("call_id", name=op.f("uq_recordings_call_id")),
    )
    op.create_table(
        "usage_lines",
        sa.Column("id", BIGINT_PK, primary_key=True, autoincrement=True),
        sa.Column("call_id", sa.String(40), sa.ForeignKey("calls.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("quantity", sa.Float(), nullable=False),
        sa.Column("unit", sa.String(16), nullable=False),
        sa.Column("unit_price_micros", sa.Float(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("markup_micros", sa.BigInteger(), nullable=False),
        sa.UniqueConstraint("call_id", "kind", name=op.f("uq_usage_lines_call_id")),
    )
    op.create_index("ix_usage_lines_org_id_at", "usage_lines", ["org_id", "at"])
    op.create_table(
        "invoices",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.String(40), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("period_end", sa.Date(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("currency", sa.String(8), nullable=False),
        sa.Column("display_currency", sa.String(8), nullable=False),
        sa.Column("exchange_rate", sa.Float(), nullable=False),
        sa.Column("subtotal_micros", sa.BigInteger(), nullable=False),
        sa.Column("markup_micros", sa.BigInteger(), nullable=False),
        sa.Column("total_micros", sa.BigInteger(), nullable=False),
        sa.Column("lines", JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("number", name=op.f("uq_invoices_number")),
        sa.UniqueConstraint("org_id", "period_start", name=op.f("uq_invoices_org_id")),
    )


def downgrade() -> None:
    op.drop_table("invoices")
    op.drop_index("ix_usage_lines_org_id_at", "usage_lines")
    op.drop_table("usage_lines")
    op.drop_table("recordings")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("metrics")
