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

from batchyard.db import batches, parts
from batchyard.db.costs import refresh_batch_totals
from batchyard.db.models import BatchRow, PartRow
from batchyard.db.results import upsert_results
from batchyard.db.transitions import claim_part, transition_part
from batchyard.domain.jsonl import OutputLine, iter_output_lines, render_result_line
from batchyard.domain.lifecycle import PartStatus, part_status_after_ingest
from batchyard.errors import ProviderNotFoundError
from batchyard.metrics.counters import count_rows
from batchyard.services import anthropic_parts
from batchyard.services.container import Services
from batchyard.services.costs import RowPricer, over_cap_after_ingest, stop_for_budget
from batchyard.services.crash import crash_point
from batchyard.services.retry import requeue_for_quota, settle_part
from batchyard.services.state import pipeline_log, request_finalize_if_done

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20
#: Up to this many requests, a part's custom_id index is kept in memory while ingesting
#: (about 200 bytes each); bigger parts are looked up in SQL batch by batch.
INDEX_MAX_REQUESTS = 200_000
#: A batch of result rows is written once it holds this many response bytes.
FLUSH_BYTES = 4 << 20


def ingest_part(svc: Services, part_id: str) -> int:
    """Ingest one part whose provider batch ended; returns result rows written."""
    with svc.sessions.begin() as session:
        if not claim_part(session, part_id, PartStatus.INGESTING,
                          svc.settings.pipeline.stale_seconds):
            return 0
    with svc.sessions() as session:
        part = parts.get_part(session, part_id)
        batch = batches.get_batch_row(session, part.batch_id) if part else None
    if part is None or batch is None:
        return 0
    outcome = part_status_after_ingest(part.provider_status, error_codes=_error_codes(part),
                                       has_output=bool(part.provider_output_file_id))
    if outcome == PartStatus.REQUEUED:
        _finish(svc, part, requeue_for_quota(svc, part))
        return 0
    if outcome == PartStatus.FAILED:
        _fail_validation(svc, part)
        return 0
    written = _ingest_files(svc, part, batch)
    # Recomputed from the rows (not incremented): a second ingest cannot count twice.
    with svc.sessions.begin() as session:
        refresh_batch_totals(session, part.batch_id)
        over = over_cap_after_ingest(session, batch)
        stopped = over is not None and stop_for_budget(session, batch.id, over)
    if stopped:
        svc.nudge("cancel", batch.id)
    follow_up = settle_part(svc, part_id)
    with svc.sessions.begin() as session:
        batches.refresh_live_counts(session, part.batch_id)
    pipeline_log.info("batch %s part %d ingested: %d results stored, %d retry parts",
                      part.batch_id, part.seq, written, len(follow_up[0]))
    _finish(svc, part, follow_up)
    return written


def _error_codes(part: PartRow) -> list[str]:
    errors = (part.provider_errors or {}).get("data") or []
    return [str(err["code"]) for err in errors if err.get("code")]


def _fail_validation(svc: Services, part: PartRow) -> None:
    with svc.sessions.begin() as session:
        transition_part(session, part.id, PartStatus.INGESTING, PartStatus.FAILED,
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
    written = 0
    for file_id in (part.provider_output_file_id, part.provider_error_file_id):
        if not file_id:
            continue
        try:
            written += _ingest_file(svc, part, batch, file_id)
        except ProviderNotFoundError:
            # Gone at the provider (deleted, retention): its requests count as unanswered
            # and are retried like those of a batch that ended without output.
            logger.warning("part.output_missing", extra={"part_id": part.id, "file_id": file_id})
    logger.info("part.ingested", extra={"part_id": part.id, "rows": written})
    return written


def _ingest_file(svc: Services, part: PartRow, batch: BatchRow, file_id: str) -> int:
    with tempfile.TemporaryFile() as tmp:
        if anthropic_parts.is_anthropic(svc, part.deployment):
            client = svc.providers.anthropic_for(str(part.deployment))
            anthropic_parts.download_results(client, file_id, batch.endpoint, tmp)
        else:  # streamed to disk, never held in memory
            svc.providers.for_deployment(str(part.deployment)).download_file(file_id, tmp)
        tmp.seek(0)
        return ingest_stream(svc, part, batch, tmp)


def ingest_stream(svc: Services, part: PartRow, batch: BatchRow, stream: IO[bytes]) -> int:
    """Parse a provider output/error file and upsert its result rows in bulk batches.

    Memory is bounded by one batch of ``ingest_batch_rows`` lines plus, for parts of up to
    ``INDEX_MAX_REQUESTS`` requests (every real provider batch: OpenAI allows 50,000), an
    in-memory custom_id index of the part; larger parts look each batch up in SQL instead.
    """
    cfg = svc.settings.pipeline
    written = 0
    pricer = RowPricer(svc, part, batch)
    pending: list[OutputLine] = []
    index = _part_index(svc, part) if part.request_count <= INDEX_MAX_REQUESTS else None
    # A user's cancel keeps batch_cancelled as the final answer (no retry).
    pending_bytes = 0
    for line in iter_output_lines(_chunks(stream), retry_cancelled=False):
        pending.append(line)
        pending_bytes += len(line.body) if line.body is not None else 0
        # Flush by rows or by bytes, so 20 KB answers do not make a batch 40x bigger.
        if len(pending) >= cfg.ingest_batch_rows or pending_bytes >= FLUSH_BYTES:
            written += _flush(svc, part, batch, pending, index, pricer)
            pending_bytes = 0
            crash_point(svc.settings, "mid_ingest")
    return written + _flush(svc, part, batch, pending, index, pricer)


def _part_index(svc: Services, part: PartRow) -> dict[str, tuple[int, int]]:
    with svc.sessions() as session:
        return parts.request_index(session, part.id)


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(_READ_CHUNK):
        yield chunk


def _row(batch: BatchRow, part: PartRow, line: OutputLine, index: dict[str, tuple[int, int]],
         max_attempts: int, pricer: RowPricer) -> dict[str, Any] | None:
    found = index.get(line.custom_id)
    if found is None:
        return None  # not one of this part's requests (never trust provider output blindly)
    line_no, attempt = found
    if not line.ok and line.retryable and attempt < max_attempts and not batch.cancel_requested:
        return None  # left without a result: settle_part moves it to a retry part
    row = {
        "batch_id": batch.id, "custom_id": line.custom_id, "line_no": line_no,
        "part_id": part.id, "attempt": attempt, "ok": line.ok,
        "status_code": line.status_code, "provider_request_id": line.request_id,
        "response_body": line.body.decode("utf-8") if line.body is not None else None,
        "error_code": line.error_code, "error_message": line.error_message,
        "input_tokens": line.input_tokens, "output_tokens": line.output_tokens,
        "total_tokens": line.total_tokens, "created_at": int(time.time()),
        "cached_tokens": line.cached_tokens,
        "rendered_bytes": len(render_result_line(
            batch_id=batch.id, custom_id=line.custom_id, status_code=line.status_code,
            request_id=line.request_id, body=line.body, error_code=line.error_code,
            error_message=line.error_message)),
    }
    pricer.fill(row, line)
    return row


def _flush(svc: Services, part: PartRow, batch: BatchRow, lines: list[OutputLine],
           part_index: dict[str, tuple[int, int]] | None, pricer: RowPricer) -> int:
    if not lines:
        return 0
    max_attempts = svc.settings.pipeline.max_request_attempts
    with svc.sessions.begin() as session:
        index = (part_index if part_index is not None
                 else parts.lookup_requests(session, part.batch_id, part.id,
                                            [line.custom_id for line in lines]))
        rows = [row for line in lines
                if (row := _row(batch, part, line, index, max_attempts, pricer)) is not None]
        upsert_results(session, rows)
        # Still working: keep the lease so the sweep does not hand the part to another worker.
        parts.set_next_poll(session, part.id,
                            time.time() + svc.settings.pipeline.stale_seconds)
    count_rows(bool(row["ok"]) for row in rows)
    lines.clear()
    return len(rows)
