"""Agents say where they come from: ``api`` (made through the API or the CLI) or ``file`` (the record a
YAML or Python agent's calls are filed under).

A call of an operator's file agent used to add a version to any stored agent of the same name, so an
anonymous call could overwrite a tenant's agent with the file's configuration. Every existing agent
becomes ``api``: which of them were records of file agents is not known, so none is taken for one.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="api"))


def downgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("source")
