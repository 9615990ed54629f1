"""indexes for the dashboard's batch list and the scrape-time metrics

Revision ID: 0500
Revises: 0400
Create Date: 2026-11-30 05:00:00

The batch list reads the newest batches of one status or one owner (``ORDER BY created_at
DESC LIMIT 50``); the metrics count parts by status and deployment and read the live ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0500"
down_revision: str | None = "0400"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_batches_status_created", "batches", ["status", "created_at"])
    op.create_index("ix_batches_owner_created", "batches", ["owner_key_id", "created_at"])
    op.create_index("ix_parts_status_deployment", "parts", ["status", "deployment"])


def downgrade() -> None:
    op.drop_index("ix_parts_status_deployment", table_name="parts")
    op.drop_index("ix_batches_owner_created", table_name="batches")
    op.drop_index("ix_batches_status_created", table_name="batches")
