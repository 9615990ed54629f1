"""Split a stream of byte chunks into numbered lines (shared by input and output parsing).

Lines are cut a whole chunk at a time with ``bytes.splitlines`` (C speed, no per-line
Python work, no extra copy to drop the newline): a per-line Python splitter cost about as
much as the JSON parsing itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NoReturn

from batchyard.errors import JsonlError


def iter_line_blocks(chunks: Iterable[bytes], *,
                     max_line_bytes: int | None = None) -> Iterator[list[bytes]]:
    """Yield lists of consecutive lines, without their ``\\n`` / ``\\r\\n`` endings.

    Every line of the input appears exactly once, in order, blank ones included, so a
    caller numbering them gets the file's line numbers. A last line without a newline is
    still yielded. With ``max_line_bytes``, a longer line raises as soon as it is seen (an
    endless line is not buffered past the limit).
    """
    carry = b""
    gathered: list[bytes] = []  # pieces of one long line (joined once, not re-copied)
    gathered_len = 0
    done = 0  # lines yielded so far, for error line numbers
    for chunk in chunks:
        if b"\n" not in chunk:  # no line ends here: keep gathering
            gathered.append(chunk)
            gathered_len += len(chunk)
            if max_line_bytes is not None and len(carry) + gathered_len > max_line_bytes + 1:
                raise_line_too_long(done + 1, len(carry) + gathered_len, max_line_bytes)
            continue
        if gathered:
            carry = b"".join([carry, *gathered])
            gathered, gathered_len = [], 0
        lines = _split(chunk)
        if carry:  # join the unfinished line to its end; copying only that line
            if carry.endswith(b"\r") and chunk.startswith(b"\n"):
                carry = carry[:-1]  # a "\r\n" cut between two chunks
            lines[0] = carry + lines[0]
        if chunk.endswith(b"\n"):
            carry = b""
        else:  # the last piece is unfinished; a "\r" it ended with may begin a "\r\n"
            carry = lines.pop() + (b"\r" if chunk.endswith(b"\r") else b"")
        if max_line_bytes is not None:
            _check_lengths(lines, done, max_line_bytes)
        done += len(lines)
        yield lines
    if gathered:
        carry = b"".join([carry, *gathered])
    if carry:
        line = carry[:-1] if carry.endswith(b"\r") else carry
        if max_line_bytes is not None:
            _check_lengths([line], done, max_line_bytes)
        yield [line]


def _split(data: bytes) -> list[bytes]:
    """Lines of ``data``; a final line without ``\\n`` comes last (the caller decides)."""
    # splitlines also splits at a lone "\r", which JSON allows as whitespace inside a
    # line; only trust it when every "\r" is part of a "\r\n" (or ends the data).
    if b"\r" not in data or data.count(b"\r") == data.count(b"\r\n") + data.endswith(b"\r"):
        return data.splitlines()
    lines = data.split(b"\n")
    if not lines[-1]:
        lines.pop()  # the empty piece after a final newline
    return [line[:-1] if line.endswith(b"\r") else line for line in lines]


def _check_lengths(lines: list[bytes], done: int, limit: int) -> None:
    if lines and max(map(len, lines)) > limit:
        index = next(i for i, line in enumerate(lines) if len(line) > limit)
        raise_line_too_long(done + index + 1, len(lines[index]), limit)


def iter_lines(chunks: Iterable[bytes], *,
               max_line_bytes: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Yield ``(line_no, line)`` from byte chunks; lines may span chunks.

    Line numbers are 1-based and count blank lines too. ``\\n`` and ``\\r\\n`` endings are
    removed; a last line without a newline is still yielded.
    """
    line_no = 0
    for lines in iter_line_blocks(chunks, max_line_bytes=max_line_bytes):
        for line in lines:
            line_no += 1
            yield line_no, line


def raise_line_too_long(line_no: int, size: int, limit: int) -> NoReturn:
    """Raise the error for a line longer than ``limit`` bytes."""
    raise JsonlError(f"the line is longer than the limit of {limit:,} bytes ({size:,} read)",
                     line=line_no, code="invalid_request")
