"""Call messages: the notification outbox also carries texts and emails an agent sends during a call.

``lead_id`` becomes optional; ``call_id``, ``source`` (``lead`` for every existing row), ``subject`` and
``body`` are added.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-16
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lead_notifications") as batch:
        batch.alter_column("lead_id", existing_type=sa.String(40), nullable=True)
        batch.add_column(sa.Column("call_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="lead"))
        batch.add_column(sa.Column("subject", sa.String(200), nullable=True))
        batch.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_lead_notifications_call_id_calls"), "calls", ["call_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index(op.f("ix_lead_notifications_call_id"), ["call_id"])


def downgrade() -> None:
    """Calls' messages have no lead to belong to: they go with the columns."""
    op.execute(sa.text("DELETE FROM lead_notifications WHERE lead_id IS NULL"))
    with op.batch_alter_table("lead_notifications") as batch:
        batch.drop_index(op.f("ix_lead_notifications_call_id"))
        batch.drop_constraint(op.f("fk_lead_notifications_call_id_calls"), type_="foreignkey")
        batch.drop_column("body")
        batch.drop_column("subject")
        batch.drop_column("source")
        batch.drop_column("call_id")
        batch.alter_column("lead_id", existing_type=sa.String(40), nullable=False)
