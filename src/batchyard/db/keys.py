"""The api_keys table: virtual keys, stored by the sha256 of their plain text."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from batchyard.db.models import ApiKeyRow


def add_key(session: Session, row: ApiKeyRow) -> None:
    """Record a new virtual key."""
    session.add(row)


def all_keys(session: Session, *, include_revoked: bool) -> list[ApiKeyRow]:
    """Every virtual key, oldest first."""
    query = select(ApiKeyRow).order_by(ApiKeyRow.created_at, ApiKeyRow.id)
    if not include_revoked:
        query = query.where(ApiKeyRow.revoked_at.is_(None))
    return list(session.scalars(query))


def get_key(session: Session, key_id: str) -> ApiKeyRow | None:
    """The key with this id."""
    return session.get(ApiKeyRow, key_id)


def key_by_hash(session: Session, key_hash: str) -> ApiKeyRow | None:
    """The key whose plain text hashes to ``key_hash``."""
    return session.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == key_hash))

