"""Defensive parsing of provider answers (quirks from the reference, §7.5 and §9)."""

from __future__ import annotations

import pytest

from batchyard.providers.base import ProviderBatchError, ProviderRequestCounts
from batchyard.providers.wire import (
    error_fields,
    next_cursor,
    parse_batch,
    parse_file,
    parse_page,
    status,
    timestamp,
)

AZURE_DOC_BATCH = {
    "id": "batch_6caaf24d-54a5-46be-b1b7-518884fcbdde",
    "object": "batch",
    "endpoint": None,
    "input_file_id": "file-7733bc35e32841e297a62a9ee50b3461",
    "completion_window": "24h",
    "status": "Validating",
    "output_file_id": "",
    "error_file_id": "",
    "created_at": "2024-07-19T21:44:18.0000000+00:00",
    "expires_at": "2024-07-20T21:44:18Z",
    "request_counts": {"total": None, "completed": None, "failed": None},
    "errors": {"object": "list", "data": {"code": "invalid_json_line", "message": "bad",
                                          "line": "7"}},
}


@pytest.mark.parametrize(("raw", "expected"), [
    (1721425458, 1721425458),
    (1721425458.9, 1721425458),
    ("1721425458", 1721425458),
    ("2024-07-19T21:44:18Z", 1721425458),
    ("2024-07-19T21:44:18+02:00", 1721418258),
    ("2024-07-19T21:44:18", 1721425458),
    ("", None),
    (None, None),
    ("not a date", None),
])
def test_timestamps_accept_ints_numeric_strings_and_iso(raw: object, expected: int | None) -> None:
    assert timestamp(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    ("Validating", "validating"), ("InProgress", "in_progress"), ("in_progress", "in_progress"),
    ("Cancelling", "cancelling"), ("FINALIZING", "finalizing"), ("completed", "completed"),
])
def test_statuses_normalise_to_openai_lowercase(raw: str, expected: str) -> None:
    assert status(raw) == expected


def test_azure_documentation_batch_parses_with_every_quirk() -> None:
    batch = parse_batch(AZURE_DOC_BATCH)
    assert batch.status == "validating"
    assert batch.output_file_id is None and batch.error_file_id is None
    assert batch.endpoint is None
    assert batch.created_at == 1721425458
    assert batch.expires_at == 1721425458 + 86_400
    assert batch.request_counts == ProviderRequestCounts(0, 0, 0)
    assert batch.errors == (ProviderBatchError("invalid_json_line", "bad", None, 7),)
    assert batch.model is None and batch.usage is None and batch.metadata is None


def test_openai_batch_keeps_every_field() -> None:
    body = {
        "id": "batch_abc", "object": "batch", "endpoint": "/v1/chat/completions",
        "model": "gpt-4o-mini", "errors": None, "input_file_id": "file-in",
        "completion_window": "24h", "status": "completed", "output_file_id": "file-out",
        "error_file_id": None, "created_at": 10, "in_progress_at": 11, "expires_at": 86410,
        "finalizing_at": 12, "completed_at": 13, "failed_at": None, "expired_at": None,
        "cancelling_at": None, "cancelled_at": None,
        "request_counts": {"total": 3, "completed": 2, "failed": 1},
        "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12},
        "metadata": {"batchyard_part_id": "part_1"},
    }
    batch = parse_batch(body)
    assert (batch.in_progress_at, batch.finalizing_at, batch.completed_at) == (11, 12, 13)
    assert batch.request_counts == ProviderRequestCounts(3, 2, 1)
    assert batch.usage == {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12}
    assert batch.metadata == {"batchyard_part_id": "part_1"}
    assert batch.output_file_id == "file-out" and batch.error_file_id is None
    assert batch.errors == ()


def test_failed_batch_errors_list_with_null_line() -> None:
    body = {"id": "b", "status": "failed", "errors": {"object": "list", "data": [
        {"code": "token_limit_exceeded", "message": "Enqueued token limit reached",
         "param": None, "line": None},
        {"code": "duplicate_custom_id", "message": "dup", "param": "custom_id", "line": 4},
    ]}}
    errors = parse_batch(body).errors
    assert [e.code for e in errors] == ["token_limit_exceeded", "duplicate_custom_id"]
    assert errors[0].line is None and errors[1].line == 4 and errors[1].param == "custom_id"


def test_file_object_parses_azure_pending_status_and_iso_dates() -> None:
    record = parse_file({"id": "file-1", "object": "file", "bytes": "120",
                         "created_at": "2024-07-19T21:44:18Z", "filename": "in.jsonl",
                         "purpose": "batch", "status": "Pending"})
    assert (record.bytes, record.created_at, record.status) == (120, 1721425458, "pending")
    assert record.expires_at is None


def test_list_without_has_more_is_a_last_page() -> None:
    page = parse_page({"object": "list", "data": [{"id": "file-a"}, {"id": "file-b"}]},
                      parse_file)
    assert page.has_more is False
    assert (page.first_id, page.last_id) == ("file-a", "file-b")
    assert next_cursor(page, None) is None


def test_cursor_is_last_item_id_and_stops_when_it_does_not_move() -> None:
    page = parse_page({"data": [{"id": "b1"}, {"id": "b2"}], "has_more": True,
                       "last_id": "ignored"}, parse_file)
    assert next_cursor(page, None) == "b2"
    assert next_cursor(page, "b2") is None


@pytest.mark.parametrize(("body", "expected"), [
    ({"error": {"message": "Invalid file format for Batch API. Must be .jsonl",
                "type": "invalid_request_error", "param": None, "code": None}},
     ("Invalid file format for Batch API. Must be .jsonl", None, None)),
    ({"error": {"message": "Rate limit reached", "type": "requests", "param": None,
                "code": "rate_limit_exceeded"}},
     ("Rate limit reached", "rate_limit_exceeded", None)),
    ({"error": {"code": "notFound", "message": "File not found.", "target": "file_id"}},
     ("File not found.", "notFound", "file_id")),
    ({"error": {"message": "bad", "innererror": {"code": "invalidPayload"}}},
     ("bad", "invalidPayload", None)),
    ({"error": "plain text"}, ("plain text", None, None)),
    ("<html>", (None, None, None)),
])
def test_error_envelopes_of_both_providers(body: object, expected: tuple[object, ...]) -> None:
    assert error_fields(body) == expected
