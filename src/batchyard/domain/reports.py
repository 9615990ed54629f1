"""Records that explain a batch to a person or a script: each part's provider facts, and the
failed requests grouped by error code. Built by services (from SQL) or by a remote client
(from the API's JSON); rendered by the CLI."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict

from batchyard.domain.lifecycle import POLL_PART_STATUSES


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class PartSummary(_Record):
    """One part of a batch: where it went and what the provider says about it."""

    id: str
    seq: int
    attempt: int = 1
    deployment: str | None = None
    status: str
    request_count: int = 0
    provider_batch_id: str | None = None
    provider_status: str | None = None
    #: Requests the provider reported finished (succeeded or failed) at the last poll.
    provider_done: int = 0
    #: Succeeded / failed requests: the provider's live counts while the part is at the
    #: provider, the ingested result rows once it has ended.
    completed: int = 0
    failed: int = 0
    #: The provider's own reason when the part failed (code: message), or the last error.
    error: str | None = None


class FailureExample(_Record):
    """One failed request, as an example of its group."""

    custom_id: str
    line: int | None = None
    status_code: int | None = None
    message: str | None = None


class FailureGroup(_Record):
    """The failed requests that share one error code ("" when the provider gave none)."""

    code: str
    count: int
    examples: tuple[FailureExample, ...] = ()


class ResultPreview(_Record):
    """A short view of one result row (the demo's table)."""

    line: int
    custom_id: str
    status_code: int | None = None
    attempt: int = 1
    answer: str = ""
    error_code: str | None = None


# Built from rows read by attribute (SQLAlchemy Core rows, or the CLI's sqlite3 rows), so
# the service layer and the CLI's SQLite reader make the same records.

def part_error(provider_errors: dict[str, Any] | None, last_error: str | None) -> str | None:
    """A failed part's reason: the provider's first error (code: message), else our last."""
    errors = (provider_errors or {}).get("data") or []
    if errors:
        first = errors[0]
        return f"{first.get('code') or 'error'}: {first.get('message') or ''}".strip()
    return last_error


def part_summary(row: Any, ingested: Mapping[str, tuple[int, int]]) -> PartSummary:
    """The summary of a part row (the columns of ``db.reports.part_rows``), with its counts:
    the provider's live ones while it runs the part, else the ingested results
    (``ingested``: part id -> (succeeded, failed) result rows)."""
    completed, failed = ingested.get(row.id, (0, 0))
    if row.status in POLL_PART_STATUSES:
        completed, failed = row.provider_completed or 0, row.provider_failed or 0
    return PartSummary(id=row.id, seq=row.seq, attempt=row.attempt, deployment=row.deployment,
                       status=row.status, request_count=row.request_count or 0,
                       provider_batch_id=row.provider_batch_id,
                       provider_status=row.provider_status,
                       provider_done=row.provider_done or 0, completed=completed,
                       failed=failed, error=part_error(row.provider_errors, row.last_error))


def failure_group(code: str, count: int, examples: Iterable[Any]) -> FailureGroup:
    """A group of failed requests from its code, its size and example rows (custom_id,
    line_no, status_code, error_message)."""
    return FailureGroup(code=code, count=count, examples=tuple(
        FailureExample(custom_id=r.custom_id, line=r.line_no, status_code=r.status_code,
                       message=r.error_message) for r in examples))
