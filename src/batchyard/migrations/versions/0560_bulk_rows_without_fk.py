"""requests, results: no foreign key to batches (bulk COPY without a per-row RI check)

Every request and result row is written by code that has just read its batch row, and
batches are never deleted, so the constraint guarded nothing the code does not; its per-row
trigger cost a third of the database's time for each COPY of request and result rows
(benchmarks/e2e_bench.py, docs/benchmarks.md). The (batch_id, custom_id) unique indexes stay.

Revision ID: 0560
Revises: 0550
Create Date: 2026-11-30 08:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0560"
down_revision: str | None = "0550"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("requests", "results")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(op.f(f"fk_{table}_batch_id_batches"), type_="foreignkey")


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_foreign_key(op.f(f"fk_{table}_batch_id_batches"), "batches",
                                        ["batch_id"], ["id"])
