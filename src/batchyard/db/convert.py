"""ORM rows -> frozen records in OpenAI's field names (the only place rows are converted)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from batchyard.db.models import BatchRow, FileRow

T = TypeVar("T")


@dataclass(frozen=True)
class FileRecord:
    """A file as our API shows it."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    expires_at: int | None = None
    status: str = "processed"
    status_details: str | None = None
    object: str = "file"


@dataclass(frozen=True)
class BatchRecord:
    """A batch as our API shows it (OpenAI's Batch object)."""

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    request_counts: dict[str, int]
    model: str | None = None
    errors: dict[str, Any] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    usage: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    object: str = "batch"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a cursor-paginated list."""

    data: list[T] = field(default_factory=list)
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


def file_record(row: FileRow) -> FileRecord:
    """The record of a file row."""
    return FileRecord(id=row.id, bytes=int(row.bytes or 0), created_at=row.created_at,
                      filename=row.filename, purpose=row.purpose, expires_at=row.expires_at,
                      status=row.status or "processed")


def batch_record(row: BatchRow) -> BatchRecord:
    """The record of a batch row (usage only once tokens were counted)."""
    usage = None
    if row.input_tokens or row.output_tokens:
        usage = {"input_tokens": row.input_tokens, "output_tokens": row.output_tokens,
                 "total_tokens": row.input_tokens + row.output_tokens,
                 "input_tokens_details": {"cached_tokens": row.cached_tokens},
                 "output_tokens_details": {"reasoning_tokens": row.reasoning_tokens}}
    return BatchRecord(
        id=row.id, endpoint=row.endpoint, input_file_id=row.input_file_id,
        completion_window=row.completion_window, status=row.status, created_at=row.created_at,
        request_counts={"total": row.total or 0, "completed": row.completed or 0,
                        "failed": row.failed or 0},
        model=row.model, errors=row.errors, output_file_id=row.output_file_id,
        error_file_id=row.error_file_id, in_progress_at=row.in_progress_at,
        expires_at=row.expires_at, finalizing_at=row.finalizing_at,
        completed_at=row.completed_at, failed_at=row.failed_at, expired_at=row.expired_at,
        cancelling_at=row.cancelling_at, cancelled_at=row.cancelled_at, usage=usage,
        metadata=row.metadata_)
