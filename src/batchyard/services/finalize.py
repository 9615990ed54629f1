"""finalize: once no part is live, settle the public batch from our own rows.

Counts and token totals are SQL aggregates over the result rows; the output and error files
are FileRows (kind output/error) whose bytes are rendered from the result rows on demand, so
results outlive the provider's retention. Safe to run twice (stable file ids, CAS status).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from batchyard.db.models import BatchRow, FileRow, PartRow, RequestRow, ResultRow
from batchyard.db.transitions import claim_batch, transition_batch
from batchyard.domain.lifecycle import (
    OPEN_BATCH_STATUSES,
    BatchStatus,
    PartStatus,
    final_batch_status,
)
from batchyard.services.container import Services
from batchyard.services.ids import result_file_id
from batchyard.services.render import rendered_size
from batchyard.services.retry import close_missing, past_window
from batchyard.services.state import PARKED, STAGE_DONE, STAGE_FINALIZING, live_part_count

logger = logging.getLogger(__name__)


def finalize_batch(svc: Services, batch_id: str) -> str | None:
    """Settle a batch whose parts are all done; returns its final status (None: not yet)."""
    with svc.sessions.begin() as session:
        if not claim_batch(session, batch_id, svc.settings.pipeline.stale_seconds,
                           stages=[STAGE_FINALIZING]):
            return None
        if live_part_count(session, batch_id):
            return None  # the last part to end will ask again
        batch = session.get(BatchRow, batch_id)
        if batch is None:
            return None
        failed_parts = _failed_part_errors(session, batch_id)
        status = _final_status(session, batch, failed_parts)
        if status != BatchStatus.FAILED:
            code = {BatchStatus.CANCELLED: "batch_cancelled",
                    BatchStatus.EXPIRED: "batch_expired"}.get(status, "no_result")
            close_missing(session, batch_id, None, code, f"the batch was {status} first")
    with svc.sessions.begin() as session:
        values = _counts(session, batch_id)
        values.update(_result_files(svc, session, batch_id, values))
        if status == BatchStatus.FAILED:
            values["errors"] = {"object": "list", "data": failed_parts}
        now = int(time.time())
        values[f"{status}_at"] = now
        transition_batch(session, batch_id, OPEN_BATCH_STATUSES, status, reason="all parts done",
                         stage=STAGE_DONE, due_at=now + PARKED, **values)
    logger.info("batch.finalized", extra={"batch_id": batch_id, "status": status.value})
    return status.value


def _failed_part_errors(session: Session, batch_id: str) -> list[dict[str, Any]]:
    errors: list[dict[str, Any]] = []
    stmt = select(PartRow.provider_errors).where(PartRow.batch_id == batch_id,
                                                 PartRow.status == PartStatus.FAILED)
    for blob in session.scalars(stmt):
        errors.extend((blob or {}).get("data") or [{"code": "provider_failed",
                                                    "message": "the provider batch failed"}])
    return errors


def _final_status(session: Session, batch: BatchRow,
                  failed_parts: list[dict[str, Any]]) -> BatchStatus:
    closed = past_window(batch)
    return final_batch_status(cancel_requested=batch.cancel_requested,
                              any_part_failed=bool(failed_parts), window_closed=closed,
                              expired_requests=_expired_count(session, batch.id) if closed else 0)


def _expired_count(session: Session, batch_id: str) -> int:
    # Requests left batch_expired: with the window closed, the batch ends expired.
    return int(session.scalar(select(func.count()).select_from(ResultRow).where(
        ResultRow.batch_id == batch_id, ResultRow.error_code == "batch_expired")) or 0)


def _counts(session: Session, batch_id: str) -> dict[str, Any]:
    ok = func.sum(case((ResultRow.ok.is_(True), 1), else_=0))
    bad = func.sum(case((ResultRow.ok.is_(True), 0), else_=1))
    row = session.execute(select(ok, bad, func.sum(ResultRow.input_tokens),
                                 func.sum(ResultRow.output_tokens))
                          .where(ResultRow.batch_id == batch_id)).one()
    total = session.scalar(select(func.count()).select_from(RequestRow)
                           .where(RequestRow.batch_id == batch_id))
    return {"total": int(total or 0), "completed": int(row[0] or 0), "failed": int(row[1] or 0),
            "input_tokens": int(row[2] or 0), "output_tokens": int(row[3] or 0)}


def _result_files(svc: Services, session: Session, batch_id: str,
                  counts: dict[str, Any]) -> dict[str, Any]:
    batch = session.get(BatchRow, batch_id)
    owner = batch.owner_key_id if batch else None
    out: dict[str, Any] = {}
    for kind, ok, present in (("output", True, counts["completed"]),
                              ("error", False, counts["failed"])):
        if not present:
            continue
        file_id = result_file_id(batch_id, kind)
        if session.get(FileRow, file_id) is None:
            session.add(FileRow(id=file_id, owner_key_id=owner, purpose="batch_output",
                                filename=f"{batch_id}_{kind}.jsonl", kind=kind,
                                batch_id=batch_id, created_at=int(time.time()),
                                bytes=rendered_size(session, batch_id, ok=ok),
                                status="processed"))
        out[f"{kind}_file_id"] = file_id
    return out
