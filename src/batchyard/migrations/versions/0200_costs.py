"""costs: priced result rows, batch cost sums and estimates, key budgets

Revision ID: 0200
Revises: 0100
Create Date: 2026-11-30 04:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0200"
down_revision: str | None = "0100"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("max_budget_pico", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("budget_period", sa.String(length=10), nullable=True))
    with op.batch_alter_table("batches") as batch:
        batch.add_column(sa.Column("cost_pico", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("estimate_pico", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cost_currency", sa.String(length=3), nullable=True))
        batch.add_column(sa.Column("priced_requests", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("unpriced_requests", sa.Integer(), nullable=False,
                                   server_default="0"))
    with op.batch_alter_table("parts") as batch:
        batch.add_column(sa.Column("estimate_pico", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("results") as batch:
        batch.add_column(sa.Column("model", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("cached_tokens", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("cost_pico", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("cost_currency", sa.String(length=3), nullable=True))
        batch.add_column(sa.Column("price_source", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("unpriced_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        for name in ("unpriced_reason", "price_source", "cost_currency", "cost_pico",
                     "cached_tokens", "model"):
            batch.drop_column(name)
    with op.batch_alter_table("parts") as batch:
        batch.drop_column("estimate_pico")
    with op.batch_alter_table("batches") as batch:
        for name in ("unpriced_requests", "priced_requests", "cost_currency", "estimate_pico",
                     "cost_pico"):
            batch.drop_column(name)
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("budget_period")
        batch.drop_column("max_budget_pico")
