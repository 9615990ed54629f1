"""ORM rows -> frozen domain records (the only place rows are converted)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchyard.domain.pricing import pico_text
from batchyard.domain.records import (
    BatchCost,
    BatchError,
    BatchErrors,
    BatchRecord,
    BatchUsage,
    FileRecord,
    InputTokensDetails,
    OutputTokensDetails,
    Page,
    RequestCounts,
)

if TYPE_CHECKING:  # rows are only read by attribute: a Core row labelled alike will do
    from batchyard.db.models import BatchRow, FileRow

__all__ = ["BatchRecord", "FileRecord", "Page", "batch_record", "file_record"]


def file_record(row: FileRow) -> FileRecord:
    """The record of a file row."""
    return FileRecord(id=row.id, bytes=int(row.bytes or 0), created_at=row.created_at,
                      filename=row.filename, purpose=row.purpose, expires_at=row.expires_at,
                      status=row.status or "processed", kind=row.kind or "input",
                      owner_key_id=row.owner_key_id)


def _errors(blob: dict[str, Any] | None) -> BatchErrors | None:
    if not blob or not blob.get("data"):
        return None
    return BatchErrors(data=tuple(
        BatchError(code=str(err.get("code") or "provider_error"),
                   message=str(err.get("message") or ""),
                   param=err.get("param"), line=err.get("line"))
        for err in blob["data"]))


def _usage(row: BatchRow) -> BatchUsage | None:
    if not (row.input_tokens or row.output_tokens):
        return None
    return BatchUsage(input_tokens=row.input_tokens,
                      input_tokens_details=InputTokensDetails(cached_tokens=row.cached_tokens),
                      output_tokens=row.output_tokens,
                      output_tokens_details=OutputTokensDetails(
                          reasoning_tokens=row.reasoning_tokens),
                      total_tokens=row.input_tokens + row.output_tokens)


def _cost(row: BatchRow) -> BatchCost:
    # Built without validation and formatted without Decimal maths: every GET of a batch
    # goes through here.
    estimate = row.estimate_pico
    return BatchCost.model_construct(
        currency=row.cost_currency or "USD", actual=pico_text(row.cost_pico),
        estimate=None if estimate is None else pico_text(estimate),
        priced_requests=row.priced_requests or 0, unpriced_requests=row.unpriced_requests or 0)


def batch_record(row: BatchRow) -> BatchRecord:
    """The record of a batch row (usage only once tokens were counted)."""
    return BatchRecord(
        id=row.id, endpoint=row.endpoint, model=row.model, errors=_errors(row.errors),
        input_file_id=row.input_file_id, completion_window=row.completion_window,
        status=row.status, output_file_id=row.output_file_id,  # type: ignore[arg-type]
        error_file_id=row.error_file_id, created_at=row.created_at,
        in_progress_at=row.in_progress_at, expires_at=row.expires_at,
        finalizing_at=row.finalizing_at, completed_at=row.completed_at,
        failed_at=row.failed_at, expired_at=row.expired_at,
        cancelling_at=row.cancelling_at, cancelled_at=row.cancelled_at,
        request_counts=RequestCounts(total=row.total or 0, completed=row.completed or 0,
                                     failed=row.failed or 0),
        usage=_usage(row), metadata=row.metadata_, owner_key_id=row.owner_key_id,
        cost=_cost(row))
