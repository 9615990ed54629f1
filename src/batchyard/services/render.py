"""Our own output/error files, rendered from result rows in input order."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.orm import Session

from batchyard.db.results import iter_batch_results, render_row

__all__ = ["iter_rendered", "render_row"]


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
