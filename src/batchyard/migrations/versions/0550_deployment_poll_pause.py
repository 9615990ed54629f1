"""deployment_state: polls of a deployment paused after the provider answered 429

Revision ID: 0550
Revises: 0540
Create Date: 2026-11-30 07:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0550"
down_revision: str | None = "0540"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deployment_state", schema=None) as batch_op:
        batch_op.add_column(sa.Column("poll_paused_until", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deployment_state", schema=None) as batch_op:
        batch_op.drop_column("poll_paused_until")
