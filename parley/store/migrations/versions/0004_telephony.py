"""Phone calls: carrier call ids, answering-machine verdicts, phone numbers and the outbound queue.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbound_jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("agent_id", sa.String(40), sa.ForeignKey("agents.id", ondelete="SET NULL"), nullable=True),
        sa.Column("to_number", sa.String(32), nullable=False),
        sa.Column("from_number", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("window_start", sa.String(5), nullable=False),
        sa.Column("window_end", sa.String(5), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("last_call_id", sa.String(40), nullable=True),
        sa.Column("last_outcome", sa.String(64), nullable=True),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.UniqueConstraint("org_id", "idempotency_key", name=op.f("uq_outbound_jobs_org_id")),
    )
    op.create_index(op.f("ix_outbound_jobs_to_number"), "outbound_jobs", ["to_number"])
    op.create_index("ix_outbound_jobs_status_next_attempt_at", "outbound_jobs", ["status", "next_attempt_at"])
    op.create_table(
        "phone_numbers",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column(
            "org_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(40), sa.ForeignKey("agents.id", ondelete="SET NULL"), nullable=True),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.UniqueConstraint("number", name=op.f("uq_phone_numbers_number")),
    )
    op.create_index(op.f("ix_phone_numbers_org_id"), "phone_numbers", ["org_id"])
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("provider_call_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("answered_by", sa.String(32), nullable=True))
        batch.add_column(sa.Column("job_id", sa.String(40), nullable=True))
        batch.create_unique_constraint(op.f("uq_calls_provider_call_id"), ["provider_call_id"])
        batch.create_foreign_key(
            op.f("fk_calls_job_id_outbound_jobs"), "outbound_jobs", ["job_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index(op.f("ix_calls_job_id"), ["job_id"])


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_index(op.f("ix_calls_job_id"))
        batch.drop_constraint(op.f("fk_calls_job_id_outbound_jobs"), type_="foreignkey")
        batch.drop_constraint(op.f("uq_calls_provider_call_id"), type_="unique")
        batch.drop_column("job_id")
        batch.drop_column("answered_by")
        batch.drop_column("provider_call_id")
    op.drop_index(op.f("ix_phone_numbers_org_id"), table_name="phone_numbers")
    op.drop_table("phone_numbers")
    op.drop_index("ix_outbound_jobs_status_next_attempt_at", table_name="outbound_jobs")
    op.drop_index(op.f("ix_outbound_jobs_to_number"), table_name="outbound_jobs")
    op.drop_table("outbound_jobs")
