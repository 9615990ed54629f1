"""results: keyed by (batch_id, line_no); no id column, no sequence, one index fewer

A result row was indexed three times: its BIGSERIAL ``id`` (a sequence ``nextval`` per row;
no query reads ``id``), the unique (batch_id, custom_id) that makes a second ingest change
nothing, and (batch_id, line_no) for reading a batch's rows in input order. The primary key
is now (batch_id, line_no): every result row takes its request's line number, unique in its
batch, so the ordered reads keep their index and COPY maintains two indexes instead of
three (about a sixth less database CPU per ingested row, docs/benchmarks.md).

Revision ID: 0570
Revises: 0560
Create Date: 2026-11-30 10:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0570"
down_revision: str | None = "0560"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_batch_line")
        batch_op.drop_constraint(op.f("pk_results"), type_="primary")
        batch_op.drop_column("id")
        batch_op.create_primary_key(op.f("pk_results"), ["batch_id", "line_no"])


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("pk_results"), type_="primary")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE results ADD COLUMN id BIGSERIAL")
        op.create_primary_key(op.f("pk_results"), "results", ["id"])
    else:  # SQLite: the table is copied; id becomes its INTEGER PRIMARY KEY again
        with op.batch_alter_table("results", schema=None, recreate="always") as batch_op:
            batch_op.add_column(sa.Column("id", sa.Integer(), nullable=True))
        op.execute("UPDATE results SET id = rowid")
        with op.batch_alter_table("results", schema=None, recreate="always") as batch_op:
            batch_op.alter_column("id", existing_type=sa.Integer(), nullable=False)
            batch_op.create_primary_key(op.f("pk_results"), ["id"])
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index("ix_results_batch_line", ["batch_id", "line_no"], unique=False)
