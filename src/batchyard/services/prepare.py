"""prepare: validate a batch's input file and split it into parts, all or nothing.

The whole file is validated while its request rows are written, in ONE transaction with the
parts: a bad line rolls everything back and the batch ends ``failed`` with the line number,
so no part or request row of a rejected file ever exists.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy.orm import Session

from batchyard.db.bulk import insert_requests
from batchyard.db.models import BatchRow, EventRow, FileRow, PartRow
from batchyard.db.transitions import claim_batch, transition_batch
from batchyard.domain.jsonl import RequestLine, iter_request_lines, split_into_parts
from batchyard.errors import JsonlError
from batchyard.services.container import Services
from batchyard.services.ids import new_part_id
from batchyard.services.state import PARKED, STAGE_ACCEPTED, STAGE_DONE, STAGE_RUNNING

logger = logging.getLogger(__name__)


class _Moved(Exception):
    """The batch left ``validating`` while we were splitting it."""


def prepare_batch(svc: Services, batch_id: str) -> list[str]:
    """Validate and split a batch's input; returns the new part ids (already nudged)."""
    with svc.sessions.begin() as session:
        if not claim_batch(session, batch_id, svc.settings.pipeline.stale_seconds,
                           stages=[STAGE_ACCEPTED]):
            return []
    with svc.sessions() as session:
        batch = session.get(BatchRow, batch_id)
        if batch is None or batch.status != "validating":
            return []
        if batch.cancel_requested:
            _end_cancelled(svc, batch_id)
            return []
        input_file = session.get(FileRow, batch.input_file_id)
    try:
        part_ids = _split_and_store(svc, batch, input_file)
    except _Moved:
        return []
    except JsonlError as exc:
        _end_failed(svc, batch_id, exc)
        return []
    for part_id in part_ids:
        svc.nudge("submit", part_id)
    logger.info("batch.prepared", extra={"batch_id": batch_id, "parts": len(part_ids)})
    return part_ids


def input_chunks(svc: Services, file_row: FileRow | None) -> Iterator[bytes]:
    """The stored bytes of an input file, streamed."""
    if file_row is None or file_row.storage_key is None or file_row.deleted:
        raise JsonlError("the input file no longer exists", code="file_not_found")
    yield from svc.store.read(file_row.storage_key)


def _split_and_store(svc: Services, batch: BatchRow, file_row: FileRow | None) -> list[str]:
    cfg = svc.settings.pipeline
    lines = iter_request_lines(input_chunks(svc, file_row), endpoint=batch.endpoint)
    part_ids: list[str] = []
    now = time.time()
    with svc.sessions.begin() as session:
        total, model = 0, batch.model
        parts = split_into_parts(lines, max_requests=cfg.part_max_requests,
                                 max_bytes=cfg.part_max_bytes)
        for seq, part_lines in enumerate(parts, start=1):
            part_id = _store_part(session, batch.id, seq, part_lines, cfg.ingest_batch_rows, now)
            part_ids.append(part_id)
            total += len(part_lines)
            model = model or part_lines[0].model
        moved = transition_batch(session, batch.id, "validating", "in_progress",
                                 reason=f"split into {len(part_ids)} parts", total=total,
                                 model=model, stage=STAGE_RUNNING, in_progress_at=int(now),
                                 due_at=now + PARKED)
        if not moved:  # cancelled or changed meanwhile: roll the whole split back
            raise _Moved
    return part_ids


def _store_part(session: Session, batch_id: str, seq: int, lines: list[RequestLine],
                chunk_rows: int, now: float) -> str:
    part_id = new_part_id()
    session.add(PartRow(id=part_id, batch_id=batch_id, seq=seq, attempt=1, status="pending",
                        request_count=len(lines), byte_size=sum(ln.n_bytes + 1 for ln in lines),
                        estimated_tokens=sum(ln.est_tokens for ln in lines),
                        next_poll_at=now, created_at=now, updated_at=now))
    session.add(EventRow(batch_id=batch_id, part_id=part_id, entity="part", from_status=None,
                         to_status="pending", at=now, reason=f"{len(lines)} requests"))
    session.flush()
    for start in range(0, len(lines), chunk_rows):
        rows: list[dict[str, Any]] = [
            {"batch_id": batch_id, "custom_id": ln.custom_id, "line_no": ln.line_no,
             "body": ln.raw.decode("utf-8"), "part_id": part_id, "attempt": 1,
             "state": "pending"}
            for ln in lines[start:start + chunk_rows]]
        insert_requests(session, rows)
    return part_id


def _end_failed(svc: Services, batch_id: str, exc: JsonlError) -> None:
    error = {"code": exc.code or "invalid_request", "message": exc.message,
             "param": exc.param, "line": exc.line}
    now = int(time.time())
    with svc.sessions.begin() as session:
        transition_batch(session, batch_id, "validating", "failed", reason=exc.message,
                         errors={"object": "list", "data": [error]}, failed_at=now,
                         stage=STAGE_DONE, due_at=now + PARKED)
    logger.info("batch.invalid", extra={"batch_id": batch_id, "line": exc.line,
                                        "code": exc.code})


def _end_cancelled(svc: Services, batch_id: str) -> None:
    now = time.time()
    with svc.sessions.begin() as session:
        transition_batch(session, batch_id, ("validating", "cancelling"), "cancelled",
                         reason="cancelled before validation", cancelled_at=int(now),
                         stage=STAGE_DONE, due_at=now + PARKED)
