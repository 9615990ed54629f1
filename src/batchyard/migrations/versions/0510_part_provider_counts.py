"""parts: the provider's live request counts at the last poll

Revision ID: 0510
Revises: 0500
Create Date: 2026-11-30 04:25:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0510"
down_revision: str | None = "0500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("parts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("provider_completed", sa.Integer(), server_default="0",
                                      nullable=False))
        batch_op.add_column(sa.Column("provider_failed", sa.Integer(), server_default="0",
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("parts", schema=None) as batch_op:
        batch_op.drop_column("provider_failed")
        batch_op.drop_column("provider_completed")
