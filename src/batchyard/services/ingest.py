"""ingest: read a finished provider batch's output and error files into result rows.

Files are streamed to a temporary file, parsed line by line and written in bulk batches of
``ingest_batch_rows`` (each its own short transaction; an upsert keyed on (batch, custom_id)
makes a second ingest of the same file change nothing). Memory stays bounded by one batch
of rows plus the part's custom_id -> (line, attempt) map. What is left without a final result
afterwards is retried in a new part (see :mod:`batchyard.services.retry`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from typing import IO, Any

from sqlalchemy import select

from batchyard.db.models import BatchRow, PartRow, RequestRow
from batchyard.db.results import upsert_results
from batchyard.db.transitions import claim_part, transition_part
from batchyard.domain.jsonl import OutputLine, iter_output_lines
from batchyard.services.container import Services
from batchyard.services.crash import crash_point
from batchyard.services.retry import requeue_for_quota, settle_part
from batchyard.services.state import request_finalize_if_done

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20


def ingest_part(svc: Services, part_id: str) -> int:
    """Ingest one part whose provider batch ended; returns result rows written."""
    with svc.sessions.begin() as session:
        if not claim_part(session, part_id, "ingesting", svc.settings.pipeline.stale_seconds):
            return 0
    with svc.sessions() as session:
        part = session.get(PartRow, part_id)
        batch = session.get(BatchRow, part.batch_id) if part else None
    if part is None or batch is None:
        return 0
    if part.provider_status == "failed" and _quota_failure(part):
        _finish(svc, part, requeue_for_quota(svc, part))
        return 0
    if part.provider_status == "failed" and not part.provider_output_file_id:
        _fail_validation(svc, part)
        return 0
    written = _ingest_files(svc, part, batch)
    _finish(svc, part, settle_part(svc, part_id))
    return written


def _quota_failure(part: PartRow) -> bool:
    errors = (part.provider_errors or {}).get("data") or []
    return any(err.get("code") == "token_limit_exceeded" for err in errors)


def _fail_validation(svc: Services, part: PartRow) -> None:
    with svc.sessions.begin() as session:
        transition_part(session, part.id, "ingesting", "failed",
                        reason="provider rejected the part's input")
        finalize = request_finalize_if_done(session, part.batch_id)
    if finalize:
        svc.nudge("finalize", part.batch_id)


def _finish(svc: Services, part: PartRow, follow_up: tuple[list[str], bool]) -> None:
    new_parts, finalize = follow_up
    for new_part in new_parts:
        svc.nudge("submit", new_part)
    if finalize:
        svc.nudge("finalize", part.batch_id)


def _ingest_files(svc: Services, part: PartRow, batch: BatchRow) -> int:
    index = request_index(svc, part.id)
    written = 0
    for file_id in (part.provider_output_file_id, part.provider_error_file_id):
        if file_id:
            written += _ingest_file(svc, part, batch, file_id, index)
    logger.info("part.ingested", extra={"part_id": part.id, "rows": written})
    return written


def request_index(svc: Services, part_id: str) -> dict[str, tuple[int, int]]:
    """custom_id -> (line_no, attempt) of the part's requests (what output lines map to)."""
    stmt = select(RequestRow.custom_id, RequestRow.line_no, RequestRow.attempt).where(
        RequestRow.part_id == part_id)
    with svc.sessions() as session:
        return {cid: (line, attempt) for cid, line, attempt in session.execute(stmt)}


def _ingest_file(svc: Services, part: PartRow, batch: BatchRow, file_id: str,
                 index: dict[str, tuple[int, int]]) -> int:
    provider = svc.providers.for_deployment(str(part.deployment))
    with tempfile.TemporaryFile() as tmp:
        provider.download_file(file_id, tmp)  # streamed to disk, never held in memory
        tmp.seek(0)
        return ingest_stream(svc, part, batch, tmp, index)


def ingest_stream(svc: Services, part: PartRow, batch: BatchRow, stream: IO[bytes],
                  index: dict[str, tuple[int, int]]) -> int:
    """Parse a provider output/error file and upsert its result rows in bulk batches."""
    cfg = svc.settings.pipeline
    written = 0
    rows: list[dict[str, Any]] = []
    # A user's cancel keeps batch_cancelled as the final answer (no retry).
    for line in iter_output_lines(_chunks(stream), retry_cancelled=False):
        row = _row(batch, part, line, index, cfg.max_request_attempts)
        if row is not None:
            rows.append(row)
        if len(rows) >= cfg.ingest_batch_rows:
            written += _flush(svc, part.id, rows)
            crash_point(svc.settings, "mid_ingest")
    return written + _flush(svc, part.id, rows)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(_READ_CHUNK):
        yield chunk


def _row(batch: BatchRow, part: PartRow, line: OutputLine, index: dict[str, tuple[int, int]],
         max_attempts: int) -> dict[str, Any] | None:
    found = index.get(line.custom_id)
    if found is None:
        return None  # not one of this part's requests (never trust provider output blindly)
    line_no, attempt = found
    if not line.ok and line.retryable and attempt < max_attempts and not batch.cancel_requested:
        return None  # left without a result: settle_part moves it to a retry part
    return {
        "batch_id": batch.id, "custom_id": line.custom_id, "line_no": line_no,
        "part_id": part.id, "attempt": attempt, "ok": line.ok,
        "status_code": line.status_code, "provider_request_id": line.request_id,
        "response_body": line.body.decode("utf-8") if line.body is not None else None,
        "error_code": line.error_code, "error_message": line.error_message,
        "input_tokens": line.input_tokens, "output_tokens": line.output_tokens,
        "total_tokens": line.total_tokens, "created_at": int(time.time()),
    }


def _flush(svc: Services, part_id: str, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    count = len(rows)
    with svc.sessions.begin() as session:
        upsert_results(session, rows)
        # Still working: keep the lease so the sweep does not hand the part to another worker.
        part = session.get(PartRow, part_id)
        if part is not None:
            part.next_poll_at = time.time() + svc.settings.pipeline.stale_seconds
    rows.clear()
    return count
