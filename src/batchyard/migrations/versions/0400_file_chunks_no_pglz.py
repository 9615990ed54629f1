"""file_chunks.data: lz4 (or no) compression instead of PostgreSQL's default pglz

Revision ID: 0400
Revises: 0200
Create Date: 2026-11-30 04:00:00

Uploads are JSONL text that compresses about 2-3:1, and pglz spent ~90 % of a 200 MB
upload's time compressing 1 MiB chunks. lz4 compresses the same chunks at a small fraction
of that CPU (and gives up quickly on bytes that do not compress); servers built without lz4
store the column uncompressed out of line (STORAGE EXTERNAL) instead. Existing rows keep
their encoding; only new chunks are written the new way. SQLite has no such setting.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0400"
down_revision: str | None = "0200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _has_lz4() -> bool:
    found = op.get_bind().execute(sa.text(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
        "AND 'lz4' = ANY(enumvals)")).first()
    return found is not None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    if _has_lz4():
        op.execute("ALTER TABLE file_chunks ALTER COLUMN data SET COMPRESSION lz4")
    else:
        op.execute("ALTER TABLE file_chunks ALTER COLUMN data SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE file_chunks ALTER COLUMN data SET COMPRESSION DEFAULT")
    op.execute("ALTER TABLE file_chunks ALTER COLUMN data SET STORAGE EXTENDED")
