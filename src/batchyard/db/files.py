"""The files table: uploads, and the rows of our own output/error files."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from batchyard.db.convert import FileRecord, Page, file_record
from batchyard.db.models import FileRow


def get_file_row(session: Session, file_id: str) -> FileRow | None:
    """The file row, deleted or not."""
    return session.get(FileRow, file_id)


def add_file(session: Session, row: FileRow) -> None:
    """Record a new file."""
    session.add(row)


def mark_deleted(session: Session, file_id: str) -> None:
    """Mark a file deleted (its stored bytes are the caller's to remove)."""
    live = session.get(FileRow, file_id)
    if live is not None:
        live.deleted = True


def page_files(session: Session, *, owner: str | None, purpose: str | None, limit: int,
               after: str | None, desc: bool) -> Page[FileRecord]:
    """Live files visible to ``owner`` by creation time (``after`` is a file id cursor)."""
    stmt = select(FileRow).where(FileRow.deleted.is_(False))
    if owner is not None:
        stmt = stmt.where(FileRow.owner_key_id == owner)
    if purpose is not None:
        stmt = stmt.where(FileRow.purpose == purpose)
    cursor = session.get(FileRow, after) if after is not None else None
    if cursor is not None:
        at, key = cursor.created_at, cursor.id
        stmt = stmt.where((FileRow.created_at < at) | (
            (FileRow.created_at == at) & (FileRow.id < key))) if desc else \
            stmt.where((FileRow.created_at > at) | (
                (FileRow.created_at == at) & (FileRow.id > key)))
    order_by = ((FileRow.created_at.desc(), FileRow.id.desc()) if desc
                else (FileRow.created_at.asc(), FileRow.id.asc()))
    rows = list(session.scalars(stmt.order_by(*order_by).limit(limit + 1)))
    items = [file_record(r) for r in rows[:limit]]
    return Page(data=items, first_id=items[0].id if items else None,
                last_id=items[-1].id if items else None, has_more=len(rows) > limit)


def ensure_result_file(session: Session, *, file_id: str, batch_id: str, owner: str | None,
                       kind: str, size: int) -> None:
    """The row of a batch's output or error file (bytes rendered from results on demand);
    a second call changes nothing."""
    if session.get(FileRow, file_id) is None:
        session.add(FileRow(id=file_id, owner_key_id=owner, purpose="batch_output",
                            filename=f"{batch_id}_{kind}.jsonl", kind=kind, batch_id=batch_id,
                            created_at=int(time.time()), bytes=size, status="processed"))
