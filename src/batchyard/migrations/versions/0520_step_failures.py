"""batches, parts: count a step's unexpected failures (poison work ends failed)

Revision ID: 0520
Revises: 0510
Create Date: 2026-11-30 04:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0520"
down_revision: str | None = "0510"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("batches", "parts"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("failure_count", sa.Integer(), server_default="0",
                                          nullable=False))
            batch_op.add_column(sa.Column("failure_key", sa.String(length=200),
                                          nullable=True))


def downgrade() -> None:
    for table in ("parts", "batches"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("failure_key")
            batch_op.drop_column("failure_count")
