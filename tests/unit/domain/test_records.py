"""Domain records: OpenAI field names, immutability, validation."""

from __future__ import annotations

import pydantic
import pytest

from batchyard.domain.lifecycle import BatchStatus
from batchyard.domain.records import (
    BatchError,
    BatchErrors,
    BatchRecord,
    BatchUsage,
    FileRecord,
    Page,
    RequestCounts,
)

# Field names of OpenAI's Batch object (reference doc §3.3), minus the constant ``object``.
OPENAI_BATCH_FIELDS = {
    "id", "endpoint", "model", "errors", "input_file_id", "completion_window", "status",
    "output_file_id", "error_file_id", "created_at", "in_progress_at", "expires_at",
    "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at",
    "cancelled_at", "request_counts", "usage", "metadata",
}


def batch(**overrides: object) -> BatchRecord:
    fields: dict[str, object] = {"id": "batch_1", "endpoint": "/v1/chat/completions",
                                 "input_file_id": "file-1", "status": "validating",
                                 "created_at": 1_700_000_000}
    fields.update(overrides)
    return BatchRecord.model_validate(fields)


def test_batch_record_has_every_openai_field_the_owner_and_cost() -> None:
    assert set(BatchRecord.model_fields) == OPENAI_BATCH_FIELDS | {"owner_key_id", "cost"}


def test_batch_record_defaults_and_status_enum() -> None:
    b = batch()
    assert b.status is BatchStatus.VALIDATING
    assert b.request_counts == RequestCounts(total=0, completed=0, failed=0)
    assert b.completion_window == "24h" and b.usage is None and b.errors is None
    dumped = b.model_dump(mode="json")
    assert dumped["status"] == "validating" and dumped["request_counts"]["failed"] == 0


def test_errors_and_usage_dump_in_openais_shape() -> None:
    b = batch(status="failed", errors=BatchErrors(data=(
        BatchError(code="invalid_json_line", message="bad", line=3),)),
        usage=BatchUsage(input_tokens=10, output_tokens=5, total_tokens=15))
    dumped = b.model_dump(mode="json")
    assert dumped["errors"] == {"object": "list", "data": [
        {"code": "invalid_json_line", "message": "bad", "param": None, "line": 3}]}
    assert dumped["usage"] == {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0},
                               "output_tokens": 5,
                               "output_tokens_details": {"reasoning_tokens": 0},
                               "total_tokens": 15}


def test_records_are_frozen_and_strict_about_fields() -> None:
    b = batch()
    with pytest.raises(pydantic.ValidationError):
        b.status = BatchStatus.FAILED  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError):
        batch(status="done")
    with pytest.raises(pydantic.ValidationError):
        batch(surprise=1)
    assert b.model_copy(update={"status": BatchStatus.IN_PROGRESS}).status == "in_progress"


def test_file_record() -> None:
    f = FileRecord(id="file-1", bytes=12, created_at=1, filename="in.jsonl", purpose="batch")
    assert (f.status, f.kind, f.owner_key_id, f.expires_at) == ("processed", "input", None,
                                                               None)
    with pytest.raises(pydantic.ValidationError):
        FileRecord(id="file-1", created_at=1, filename="x", purpose="batch")  # type: ignore[call-arg]


def test_page_is_generic_and_validates_items() -> None:
    f = FileRecord(id="file-1", bytes=1, created_at=1, filename="a", purpose="batch")
    page = Page[FileRecord](data=[f], first_id="file-1", last_id="file-1", has_more=True)
    assert page.data[0] is f and page.has_more
    with pytest.raises(pydantic.ValidationError):
        Page[FileRecord](data=[{"id": "x"}])
    empty: Page[BatchRecord] = Page(data=[])
    assert (empty.first_id, empty.last_id, empty.has_more) == (None, None, False)
