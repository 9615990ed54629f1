"""Files: uploads streamed into the file store, and our own output/error files.

An upload is streamed into the store under a fresh key with a byte limit; the FileRow is
written only after the bytes are complete, and a failed or oversized upload deletes what
was stored, so nothing is ever half-written. Output and error files have no stored bytes:
their content is rendered from the batch's result rows, in input order.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from sqlalchemy.orm import Session

from batchyard.db import files as repo
from batchyard.db.convert import FileRecord, Page, file_record
from batchyard.db.engine import readonly_engine
from batchyard.db.models import FileRow
from batchyard.errors import NotFoundError
from batchyard.services.container import Services
from batchyard.services.ids import new_file_id
from batchyard.services.render import iter_rendered

logger = logging.getLogger(__name__)

_CHUNK = 1 << 20


def create_file(svc: Services, *, owner: str | None, filename: str, purpose: str,
                stream: BinaryIO, max_bytes: int | None = None,
                expires_after: int | None = None) -> FileRecord:
    """Store an upload (streamed, size-limited) and record it; returns the file record."""
    limit = max_bytes if max_bytes is not None else svc.settings.api.max_upload_bytes
    key = f"input/{uuid.uuid4().hex}"
    chunks = iter(lambda: stream.read(_CHUNK), b"")
    size, sha256 = svc.store.put_stream(key, chunks, max_bytes=limit)  # all or nothing
    now = int(time.time())
    row = FileRow(id=new_file_id(), owner_key_id=owner, filename=filename, purpose=purpose,
                  bytes=size, created_at=now, status="processed", kind="input",
                  expires_at=now + expires_after if expires_after else None,
                  storage_key=key, sha256=sha256, deleted=False)
    try:
        with svc.sessions.begin() as session:
            repo.add_file(session, row)
    except BaseException:
        svc.store.delete(key)
        raise
    logger.info("file.created", extra={"file_id": row.id, "bytes": row.bytes})
    return file_record(row)


def _visible(svc: Services, file_id: str, owner: str | None) -> FileRow:
    with svc.sessions() as session:
        row = repo.get_file_row(session, file_id)
    if row is None or row.deleted or (owner is not None and row.owner_key_id != owner):
        raise NotFoundError(f"No such File object: {file_id}", param="file_id")
    return row


def get_file(svc: Services, file_id: str, *, owner: str | None) -> FileRecord:
    """One file visible to ``owner`` (None: the master key sees all)."""
    return file_record(_visible(svc, file_id, owner))


def list_files(svc: Services, *, owner: str | None, purpose: str | None = None,
               limit: int = 10000, after: str | None = None,
               order: str = "desc") -> Page[FileRecord]:
    """Files visible to ``owner``, by creation time (``after`` is a file id cursor)."""
    with svc.sessions() as session:
        return repo.page_files(session, owner=owner, purpose=purpose, limit=limit,
                               after=after, desc=order != "asc")


def delete_file(svc: Services, file_id: str, *, owner: str | None) -> FileRecord:
    """Delete a file: its row is marked deleted and its stored bytes removed."""
    row = _visible(svc, file_id, owner)
    with svc.sessions.begin() as session:
        repo.mark_deleted(session, file_id)
    if row.storage_key:
        svc.store.delete(row.storage_key)
    return file_record(row)


def iter_file_content(svc: Services, file_id: str, *, owner: str | None) -> Iterator[bytes]:
    """The file's bytes: stored bytes for inputs, rendered result rows for output/error."""
    row = _visible(svc, file_id, owner)
    if row.kind in ("output", "error") and row.batch_id:
        yield from _rendered(svc, row.batch_id, ok=row.kind == "output")
        return
    if row.storage_key is None:
        return
    yield from svc.store.read(row.storage_key)


def _rendered(svc: Services, batch_id: str, *, ok: bool) -> Iterator[bytes]:
    with Session(readonly_engine(svc.engine)) as session:
        yield from iter_rendered(session, batch_id, ok=ok)
