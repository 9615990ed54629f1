"""parts: the result totals of each part, kept at ingest (finalize sums parts, not rows)

Revision ID: 0540
Revises: 0520
Create Date: 2026-11-30 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0540"
down_revision: str | None = "0520"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Null for the parts that exist already: their batches keep summing result rows.
    with op.batch_alter_table("parts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("result_totals", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("parts", schema=None) as batch_op:
        batch_op.drop_column("result_totals")
