"""Our own output/error files, rendered from result rows in input order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from batchyard.db.models import ResultRow
from batchyard.db.results import RESULT_COLUMNS, iter_batch_results
from batchyard.domain.jsonl import render_result_line


def render_row(row: Any) -> bytes:
    """One line of an output/error file for a result row (ORM object or plain row)."""
    return render_result_line(
        batch_id=row.batch_id, custom_id=row.custom_id, status_code=row.status_code,
        request_id=row.provider_request_id,
        body=row.response_body.encode("utf-8") if row.response_body is not None else None,
        error_code=row.error_code, error_message=row.error_message)


def iter_rendered(session: Session, batch_id: str, *, ok: bool,
                  buffer_bytes: int = 1 << 20) -> Iterator[bytes]:
    """The file's bytes, in chunks of about ``buffer_bytes``."""
    buf: list[bytes] = []
    size = 0
    for row in iter_batch_results(session, batch_id, ok=ok):
        line = render_row(row)
        buf.append(line)
        size += len(line)
        if size >= buffer_bytes:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


def rendered_size(session: Session, batch_id: str, *, ok: bool) -> int:
    """How many bytes the rendered file has (its FileRow.bytes), from the stored lengths."""
    fill_rendered_bytes(session, batch_id)
    total = session.scalar(select(func.sum(ResultRow.rendered_bytes))
                           .where(ResultRow.batch_id == batch_id, ResultRow.ok.is_(ok)))
    return int(total or 0)


def fill_rendered_bytes(session: Session, batch_id: str) -> None:
    """Compute the line length of rows written in SQL only (final errors for unanswered
    requests); ingested rows got theirs when they were parsed."""
    while True:
        rows = session.execute(select(ResultRow.id, *RESULT_COLUMNS)
                               .where(ResultRow.batch_id == batch_id,
                                      ResultRow.rendered_bytes == 0).limit(2_000)).all()
        if not rows:
            return
        session.execute(update(ResultRow), [
            {"id": row.id, "rendered_bytes": len(render_row(row))} for row in rows])
