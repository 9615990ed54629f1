"""Split a stream of byte chunks into numbered lines (shared by input and output parsing).

The chunks are wrapped in a raw stream under :class:`io.BufferedReader`, so the line
scanning runs in C: in a pure-Python splitter it cost as much as the JSON parsing itself.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import NoReturn

from batchyard.errors import JsonlError

_BUFFER = 1 << 20


class ChunkStream(io.RawIOBase):
    """A read-only raw stream over an iterable of ``bytes`` chunks of any size."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = iter(chunks)
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._view:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._view = memoryview(chunk)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n


def line_reader(chunks: Iterable[bytes]) -> io.BufferedReader:
    """A buffered binary reader over ``chunks``; iterate it for lines (newline included)."""
    return io.BufferedReader(ChunkStream(chunks), _BUFFER)


def iter_raw_lines(chunks: Iterable[bytes], *,
                   max_line_bytes: int | None = None) -> Iterator[bytes]:
    """Yield each line with its line ending still attached (the caller strips it).

    With ``max_line_bytes`` a line is read at most that long (+2 for ``\\r\\n``), and a
    longer one raises at once, so one giant line cannot exhaust memory.
    """
    reader = line_reader(chunks)
    if max_line_bytes is None:
        return reader
    return _bounded_lines(reader, max_line_bytes)


def _bounded_lines(reader: io.BufferedReader, max_line_bytes: int) -> Iterator[bytes]:
    limit = max_line_bytes + 2
    line_no = 0
    while line := reader.readline(limit):
        line_no += 1
        if len(line) > max_line_bytes and len(line.rstrip(b"\r\n")) > max_line_bytes:
            raise_line_too_long(line_no, len(line), max_line_bytes)
        yield line


def iter_lines(chunks: Iterable[bytes], *,
               max_line_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, line)`` from byte chunks; lines may span chunks.

    Line numbers are 1-based and count blank lines too. ``\\n`` and ``\\r\\n`` endings are
    removed; a last line without a newline is still yielded.
    """
    for line_no, line in enumerate(iter_raw_lines(chunks, max_line_bytes=max_line_bytes), 1):
        yield line_no, line.rstrip(b"\r\n")


def raise_line_too_long(line_no: int, size: int, limit: int) -> NoReturn:
    """Raise the error for a line longer than ``limit`` bytes."""
    raise JsonlError(f"the line is longer than the limit of {limit:,} bytes ({size:,} read)",
                     line=line_no, code="invalid_request")
