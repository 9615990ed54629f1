"""The streaming multipart reader: fields, the file part in chunks, limits, odd orders."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from batchyard.api.multipart import StreamingForm, boundary_of
from batchyard.errors import InvalidInputError, PayloadTooLargeError

BOUNDARY = "testboundary1234"


def encode(fields: list[tuple[str, str]], file: tuple[str, bytes] | None,
           file_first: bool = False) -> tuple[str, bytes]:
    """A multipart body in the layout curl and httpx send."""
    parts = [(f'form-data; name="{name}"'.encode(), value.encode()) for name, value in fields]
    if file:
        disposition = f'form-data; name="file"; filename="{file[0]}"'.encode()
        parts.insert(0 if file_first else len(parts), (disposition, file[1]))
    body = b"".join(b"--%s\r\nContent-Disposition: %s\r\n\r\n%s\r\n"
                    % (BOUNDARY.encode(), disp, value) for disp, value in parts)
    body += b"--%s--\r\n" % BOUNDARY.encode()
    return f"multipart/form-data; boundary={BOUNDARY}", body


def puller(body: bytes, chunk: int) -> Iterator[bytes]:
    for start in range(0, len(body), chunk):
        yield body[start:start + chunk]


def make_form(body: bytes, content_type: str, *, chunk: int = 7,
              limit: int = 10_000_000) -> StreamingForm:
    chunks = puller(body, chunk)
    return StreamingForm(lambda: next(chunks, b""), boundary_of(content_type),
                         max_file_bytes=limit)


def test_fields_then_file_stream_in_small_reads() -> None:
    payload = b"".join(b'{"custom_id": "%d"}\n' % i for i in range(500))
    content_type, body = encode([("purpose", "batch")], ("in.jsonl", payload))
    form = make_form(body, content_type, chunk=333)
    form.read_until_file()
    assert form.fields == {"purpose": "batch"} and form.filename == "in.jsonl"
    stream = form.file_stream()
    received = b"".join(iter(lambda: stream.read(100), b""))
    form.finish()
    assert received == payload and form.file_bytes == len(payload)


def test_fields_after_the_file_are_reached_by_spooling() -> None:
    content_type, body = encode([("purpose", "batch")], ("x.jsonl", b"abc\n" * 1000),
                                file_first=True)
    form = make_form(body, content_type)
    form.read_until_file()
    assert "purpose" not in form.fields
    with form.spool_file() as spooled:
        form.finish()
        assert form.fields["purpose"] == "batch" and spooled.read() == b"abc\n" * 1000


def test_a_file_over_the_limit_stops_reading() -> None:
    content_type, body = encode([("purpose", "batch")], ("x.jsonl", b"y" * 5000))
    form = make_form(body, content_type, chunk=1000, limit=4096)
    form.read_until_file()
    with pytest.raises(PayloadTooLargeError, match="limit is 4096 bytes"):
        form.file_stream().read()


def test_a_body_without_a_file_part_leaves_filename_unset() -> None:
    content_type, body = encode([("purpose", "batch")], None)
    form = make_form(body, content_type)
    form.read_until_file()
    assert form.filename is None and form.fields == {"purpose": "batch"}


def test_a_non_multipart_content_type_is_a_400() -> None:
    with pytest.raises(InvalidInputError, match="multipart/form-data") as info:
        boundary_of("application/json")
    assert info.value.http_status == 400


def test_the_filename_keeps_only_its_last_path_segment() -> None:
    content_type, body = encode([("purpose", "batch")], ("../../etc/x.jsonl", b"{}\n"))
    form = make_form(body, content_type)
    form.read_until_file()
    assert form.filename == "x.jsonl"
