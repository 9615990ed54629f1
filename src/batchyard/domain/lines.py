"""Split a stream of byte chunks into numbered lines (shared by input and output parsing)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NoReturn

from batchyard.errors import JsonlError


def iter_lines(chunks: Iterable[bytes], *,
               max_line_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, line)`` from byte chunks; lines may span chunks.

    Line numbers are 1-based and count blank lines too. ``\\r\\n`` endings lose the ``\\r``;
    a last line without a newline is still yielded. With ``max_line_bytes`` a line that grows
    past it raises at once, so one giant line cannot exhaust memory.
    """
    pending: list[bytes] = []
    pending_len = 0
    line_no = 0
    for chunk in chunks:
        pieces = chunk.split(b"\n")
        if len(pieces) == 1:
            pending.append(chunk)
            pending_len += len(chunk)
            if max_line_bytes is not None and pending_len > max_line_bytes + 1:
                raise_line_too_long(line_no + 1, pending_len, max_line_bytes)
            continue
        if pending:
            pending.append(pieces[0])
            pieces[0] = b"".join(pending)
        for line in pieces[:-1]:
            line_no += 1
            if line.endswith(b"\r"):
                line = line[:-1]
            yield line_no, line
        last = pieces[-1]
        pending = [last] if last else []
        pending_len = len(last)
    if pending:
        line = b"".join(pending)
        if line.endswith(b"\r"):
            line = line[:-1]
        yield line_no + 1, line


def raise_line_too_long(line_no: int, size: int, limit: int) -> NoReturn:
    """Raise the error for a line longer than ``limit`` bytes."""
    raise JsonlError(f"the line is longer than the limit of {limit:,} bytes ({size:,} so far)",
                     line=line_no, code="invalid_request")
