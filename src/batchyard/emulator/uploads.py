"""Receiving a multipart upload straight to disk.

Starlette's form parser would spool the file into a temporary file we would then have to
copy; instead the request stream is fed to ``python_multipart`` and the file part's bytes
are written as they arrive, so memory stays flat whatever the upload size.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header

from batchyard.emulator.errors import bad_request

PURPOSES = frozenset({"assistants", "batch", "fine-tune", "vision", "user_data", "evals"})
_MAX_FIELD = 64 * 1024
_BUFFER = 1024 * 1024


class _Receiver:
    """python_multipart callbacks: text fields into a dict, the file part onto disk."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.fields: dict[str, str] = {}
        self.filename: str | None = None
        self.size = 0
        self.too_large = False
        self._sink: IO[bytes] | None = None
        self._header_name = b""
        self._header_value = b""
        self._disposition = b""
        self._name = ""
        self._value = bytearray()
        self._is_file = False

    def callbacks(self) -> dict[str, Any]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self._disposition, self._value, self._is_file = b"", bytearray(), False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options and self._name == "file" and self.filename is None:
            self.filename = options[b"filename"].decode("utf-8", "replace")
            self._is_file = True
            self._sink = self.path.open("wb", buffering=_BUFFER)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._is_file:
            if len(self._value) + end - start <= _MAX_FIELD:
                self._value += data[start:end]
            return
        self.size += end - start
        if self.size > self.max_bytes:
            self.too_large = True  # keep draining the request, stop storing it
        elif self._sink is not None:
            self._sink.write(data[start:end])

    def on_part_end(self) -> None:
        if self._is_file and self._sink is not None:
            self._sink.close()
            self._sink = None
        elif not self._is_file:
            self.fields[self._name] = self._value.decode("utf-8", "replace")

    def discard(self) -> None:
        if self._sink is not None:
            self._sink.close()
        self.path.unlink(missing_ok=True)


async def receive(
    content_type: str, stream: AsyncIterator[bytes], path: Path, max_bytes: int
) -> _Receiver:
    """Parse a multipart body from ``stream``, writing the ``file`` part to ``path``."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise bad_request("The request must be multipart/form-data with a 'file' part.")
    receiver = _Receiver(path, max_bytes)
    parser = MultipartParser(boundary, receiver.callbacks())  # type: ignore[arg-type]
    try:
        async for chunk in stream:
            parser.write(chunk)
        parser.finalize()
    except Exception as exc:
        receiver.discard()
        raise bad_request("Invalid multipart body.") from exc
    return receiver


def expires_after(fields: dict[str, str], azure: bool) -> int | None:
    """``expires_after`` from bracket (SDK) or dot (Azure curl) notation form fields."""
    anchor = fields.get("expires_after[anchor]", fields.get("expires_after.anchor"))
    seconds = fields.get("expires_after[seconds]", fields.get("expires_after.seconds"))
    if anchor is None and seconds is None:
        return None
    low = 1_209_600 if azure else 3600
    if anchor != "created_at" or seconds is None or not seconds.isdigit() or not (
        low <= int(seconds) <= 2_592_000
    ):
        raise bad_request(f"expires_after needs anchor 'created_at' and seconds in "
                          f"[{low}, 2592000].", "expires_after")
    return int(seconds)


def check_upload(receiver: _Receiver, azure: bool) -> tuple[str, str, int | None]:
    """Validate the parsed form: returns (filename, purpose, expires_after seconds)."""
    if receiver.filename is None:
        raise bad_request("Missing required parameter: 'file'.", "file")
    purpose = receiver.fields.get("purpose")
    if not purpose:
        raise bad_request("Missing required parameter: 'purpose'.", "purpose")
    if purpose not in PURPOSES:
        raise bad_request(f"Invalid value for 'purpose': {purpose!r}.", "purpose")
    if purpose == "batch" and not receiver.filename.lower().endswith(".jsonl"):
        raise bad_request("Invalid file format for Batch API. Must be .jsonl")
    if receiver.too_large:
        raise bad_request("File is too large.")
    return receiver.filename, purpose, expires_after(receiver.fields, azure)
