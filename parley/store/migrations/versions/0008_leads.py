"""Leads: businesses, leads, their matches, the notification outbox and per-organization templates.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-09
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
UTC = sa.DateTime(timezone=True)

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _org_id() -> sa.Column[str]:
    return sa.Column(
        "org_id", sa.String(40), sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )


def upgrade() -> None:
    op.create_table(
        "businesses",
        sa.Column("id", sa.String(40), primary_key=True),
        _org_id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("radius_km", sa.Float(), nullable=True),
        sa.Column("postal_codes", JSON, nullable=False),
        sa.Column("hours", JSON, nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=False),
        sa.Column("notify_email", sa.String(320), nullable=False),
        sa.Column("notify_phone", sa.String(32), nullable=False),
        sa.Column("agent_id", sa.String(40), sa.ForeignKey("agents.id", ondelete="SET NULL"), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
    )
    op.create_index(op.f("ix_businesses_org_id"), "businesses", ["org_id"])
    op.create_index(op.f("ix_businesses_category"), "businesses", ["category"])
    op.create_table(
        "leads",
        sa.Column("id", sa.String(40), primary_key=True),
        _org_id(),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("phone", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("category", sa.String(64), nullable=False),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("postal_code", sa.String(16), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("consent_to_call", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("time_zone", sa.String(64), nullable=True),
        sa.Column("outcome", JSON, nullable=True),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.UniqueConstraint("org_id", "idempotency_key", name=op.f("uq_leads_org_id")),
    )
    op.create_index(op.f("ix_leads_status"), "leads", ["status"])
    op.create_index("ix_leads_org_id_created_at", "leads", ["org_id", "created_at"])
    op.create_table(
        "lead_matches",
        sa.Column(
            "lead_id",
            sa.String(40),
            sa.ForeignKey("leads.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "business_id",
            sa.String(40),
            sa.ForeignKey("businesses.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("distance_km", sa.Float(), nullable=True),
        sa.Column("open_at_submit", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
    )
    op.create_index(op.f("ix_lead_matches_business_id"), "lead_matches", ["business_id"])
    op.create_table(
        "lead_notifications",
        sa.Column("id", sa.String(40), primary_key=True),
        _org_id(),
        sa.Column("lead_id", sa.String(40), sa.ForeignKey("leads.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "business_id",
            sa.String(40),
            sa.ForeignKey("businesses.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(8), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTC, nullable=False),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("provider_id", sa.String(64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.Column("delivered_at", UTC, nullable=True),
        sa.UniqueConstraint(
            "lead_id", "business_id", "kind", "channel", name=op.f("uq_lead_notifications_lead_id")
        ),
    )
    op.create_index(op.f("ix_lead_notifications_org_id"), "lead_notifications", ["org_id"])
    op.create_index(op.f("ix_lead_notifications_lead_id"), "lead_notifications", ["lead_id"])
    op.create_index(op.f("ix_lead_notifications_next_attempt_at"), "lead_notifications", ["next_attempt_at"])
    op.create_index(
        "ix_lead_notifications_status_next_attempt_at", "lead_notifications", ["status", "next_attempt_at"]
    )
    op.create_table(
        "notification_templates",
        sa.Column(
            "org_id",
            sa.String(40),
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("notification_templates")
    op.drop_index("ix_lead_notifications_status_next_attempt_at", table_name="lead_notifications")
    op.drop_index(op.f("ix_lead_notifications_next_attempt_at"), table_name="lead_notifications")
    op.drop_index(op.f("ix_lead_notifications_lead_id"), table_name="lead_notifications")
    op.drop_index(op.f("ix_lead_notifications_org_id"), table_name="lead_notifications")
    op.drop_table("lead_notifications")
    op.drop_index(op.f("ix_lead_matches_business_id"), table_name="lead_matches")
    op.drop_table("lead_matches")
    op.drop_index("ix_leads_org_id_created_at", table_name="leads")
    op.drop_index(op.f("ix_leads_status"), table_name="leads")
    op.drop_table("leads")
    op.drop_index(op.f("ix_businesses_category"), table_name="businesses")
    op.drop_index(op.f("ix_businesses_org_id"), table_name="businesses")
    op.drop_table("businesses")
