"""A streaming ``multipart/form-data`` reader for uploads (bounded memory).

Starlette's form parser would spool the whole upload before the route runs. Here the body is
pulled chunk by chunk, from a worker thread, only as fast as the file store consumes the file
part, so a 200 MB upload never sits in memory and an over-size upload stops at the limit.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from batchyard.api.inputs import safe_filename
from batchyard.errors import InvalidInputError, PayloadTooLargeError

#: Text fields larger than this are refused (they are purpose / expires_after, not data).
MAX_FIELD_BYTES = 64 * 1024
#: Spooled copies of a file part stay in memory up to this size, then go to disk.
SPOOL_MEMORY_BYTES = 1024 * 1024

#: Returns the next body chunk, or b"" once the body has ended.
Pull = Callable[[], bytes]


def boundary_of(content_type: str | None) -> bytes:
    """The multipart boundary, or a 400 when the request is not multipart/form-data."""
    kind, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise InvalidInputError("Uploads must be sent as multipart/form-data with a 'file' "
                                "part and a 'purpose' field.", code="invalid_content_type")
    return boundary


def too_large(limit: int) -> PayloadTooLargeError:
    """The 413 for an upload over ``limit`` bytes."""
    return PayloadTooLargeError(f"File is too large: the limit is {limit} bytes.",
                                param="file", code="file_too_large")


def malformed(exc: MultipartParseError) -> InvalidInputError:
    """The 400 (413 for an over-long part header) for a body that is not valid multipart."""
    if "header size" in str(exc).lower():
        return PayloadTooLargeError("A multipart part header (e.g. its filename) is too long.",
                                    code="part_header_too_large")
    return InvalidInputError("The request body is not valid multipart/form-data.",
                             code="invalid_multipart")


class StreamingForm:
    """Text fields plus one streamed ``file`` part of a multipart body.

    Use :meth:`read_until_file` (fields seen so far and the file's name), then read the file
    part through :meth:`file_stream`, then :meth:`finish` to collect any trailing fields.
    """

    def __init__(self, pull: Pull, boundary: bytes, *, max_file_bytes: int) -> None:
        self._pull = pull
        self._max_file_bytes = max_file_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.file_bytes = 0
        self._chunks: deque[bytes] = deque()
        self._headers: dict[bytes, bytes] = {}
        self._header_name = b""
        self._header_value = b""
        self._part_name: str | None = None
        self._part_is_file = False
        self._field_value = bytearray()
        self._file_done = False
        self._body_done = False
        self._parser = MultipartParser(boundary, self._callbacks())

    def _callbacks(self) -> Any:
        return {
            "on_part_begin": self._on_part_begin, "on_part_data": self._on_part_data,
            "on_part_end": self._on_part_end, "on_header_field": self._on_header_field,
            "on_header_value": self._on_header_value, "on_header_end": self._on_header_end,
            "on_headers_finished": self._on_headers_finished,
        }

    # -- parser callbacks ---------------------------------------------------------------
    def _on_part_begin(self) -> None:
        self._headers, self._part_name, self._part_is_file = {}, None, False
        self._field_value = bytearray()

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._part_name = options.get(b"name", b"").decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self._part_name == "file" and filename is not None and self.filename is None:
            self._part_is_file = True
            self.filename = safe_filename(filename.decode("utf-8", "replace"))

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part_is_file:
            self.file_bytes += end - start
            if self.file_bytes > self._max_file_bytes:
                raise too_large(self._max_file_bytes)
            # The whole message is file data (the usual case): keep it as it is, uncopied.
            whole = start == 0 and end == len(data) and isinstance(data, bytes)
            self._chunks.append(data if whole else bytes(data[start:end]))
        elif len(self._field_value) + end - start > MAX_FIELD_BYTES:
            raise InvalidInputError(f"Form field '{self._part_name}' is too large.",
                                    param=self._part_name)
        else:
            self._field_value += data[start:end]

    def _on_part_end(self) -> None:
        if self._part_is_file:
            self._file_done = True
        elif self._part_name:
            self.fields[self._part_name] = self._field_value.decode("utf-8", "replace")

    # -- driving ------------------------------------------------------------------------
    def _feed_next(self) -> bool:
        """Feed one more body chunk to the parser; False once the body has ended."""
        if self._body_done:
            return False
        chunk = self._pull()
        if not chunk:
            self._body_done = True
            try:
                self._parser.finalize()
            except MultipartParseError as exc:
                raise malformed(exc) from None
            return False
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise malformed(exc) from None
        return True

    def read_until_file(self) -> None:
        """Parse until the file part has started (or the body ended without one)."""
        while self.filename is None and self._feed_next():
            pass

    def read(self, size: int = -1) -> bytes:
        """Bytes of the file part (BinaryIO-style); b"" at its end."""
        while not self._chunks and not self._file_done and self._feed_next():
            pass
        if not self._chunks:
            return b""
        chunk = self._chunks.popleft()
        if 0 < size < len(chunk):
            self._chunks.appendleft(chunk[size:])
            chunk = chunk[:size]
        return chunk

    def file_stream(self) -> FilePartStream:
        """A read-only binary stream over the file part (what the file service consumes)."""
        return FilePartStream(self)

    def spool_file(self) -> IO[bytes]:
        """Copy the file part to a spooled temp file (used when fields come after the file)."""
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)
        while chunk := self.read():
            spool.write(chunk)
        spool.seek(0)
        return spool

    def finish(self) -> None:
        """Consume the rest of the body (trailing fields)."""
        while self.read():
            pass
        while self._feed_next():
            pass


class FilePartStream:
    """File-like view of the ``file`` part (``read`` only, never seekable)."""

    def __init__(self, form: StreamingForm) -> None:
        self._form = form
        self.name = form.filename or "upload"

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes; everything left when ``size`` is negative."""
        if size is None or size < 0:
            return b"".join(iter(self._form.read, b""))
        return self._form.read(size)

    def readable(self) -> bool:
        """Always readable."""
        return True

    def seekable(self) -> bool:
        """Never seekable: the body streams past once."""
        return False
