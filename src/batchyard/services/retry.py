"""retry: what happens to a part's requests that have no final result yet.

After ingest, a request of the part without a result row was either retryable (429, 5xx,
batch_expired, request_timeout) or never answered (expired / completed without output). It
goes into a new part with ``attempt + 1`` while attempts remain; otherwise it gets a final
error row. A part whose provider batch failed for quota (token_limit_exceeded) moves all its
requests, at the same attempt, into a new part that waits for the deployment's block.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import exists, func, insert, literal, select, update
from sqlalchemy.orm import Session

from batchyard.db.models import BatchRow, EventRow, PartRow, RequestRow, ResultRow
from batchyard.db.transitions import transition_part
from batchyard.domain.lifecycle import PartStatus
from batchyard.metrics.counters import TOKEN_LIMIT_EXCEEDED
from batchyard.services.container import Services
from batchyard.services.ids import new_part_id
from batchyard.services.routing import block_deployment
from batchyard.services.state import request_finalize_if_done

#: Final error codes for requests that never got an answer, by provider end status.
_MISSING_CODES = {"expired": "batch_expired", "cancelled": "batch_cancelled"}


def settle_part(svc: Services, part_id: str) -> tuple[list[str], bool]:
    """Retry or close the part's unanswered requests and end the part (new parts, finalize?)."""
    cfg = svc.settings.pipeline
    with svc.sessions.begin() as session:
        part = session.get(PartRow, part_id)
        batch = _lock_batch(session, part.batch_id) if part else None
        if part is None or batch is None or part.status != PartStatus.INGESTING:
            return [], False
        new_parts: list[str] = []
        # Past the batch's own completion window nothing is retried: it ends expired.
        if not batch.cancel_requested and not past_window(batch):
            new_parts = _retry_missing(session, batch, part, cfg.max_request_attempts,
                                       cfg.part_max_requests)
        code = _MISSING_CODES.get(part.provider_status or "", "no_result")
        close_missing(session, batch.id, part.id, code,
                      f"the provider batch ended {part.provider_status} without a result")
        transition_part(session, part.id, PartStatus.INGESTING, PartStatus.INGESTED,
                        reason=f"{len(new_parts)} retry parts")
        finalize = request_finalize_if_done(session, batch.id)
    return new_parts, finalize


def past_window(batch: BatchRow, now: float | None = None) -> bool:
    """Has the batch's completion window (expires_at) passed?"""
    now = time.time() if now is None else now
    return batch.expires_at is not None and now > batch.expires_at


def requeue_for_quota(svc: Services, part: PartRow) -> tuple[list[str], bool]:
    """token_limit_exceeded: block the deployment and move the requests to a waiting part."""
    until = time.time() + svc.settings.pipeline.quota_retry_seconds
    with svc.sessions.begin() as session:
        batch = _lock_batch(session, part.batch_id)
        if batch is None or not transition_part(
                session, part.id, PartStatus.INGESTING, PartStatus.REQUEUED,
                reason="token_limit_exceeded"):
            return [], False
        block_deployment(session, str(part.deployment), until)
        TOKEN_LIMIT_EXCEEDED.labels(deployment=str(part.deployment)).inc()
        if batch.cancel_requested:
            return [], request_finalize_if_done(session, batch.id)
        ids = list(session.scalars(select(RequestRow.id).where(RequestRow.part_id == part.id)
                                   .order_by(RequestRow.line_no)))
        new_id = _new_part(session, batch, ids, part.attempt, bump=False)
    return [new_id], False


def close_missing(session: Session, batch_id: str, part_id: str | None, code: str,
                  message: str) -> None:
    """Give every still-unanswered request (of a part, or the batch) a final error row."""
    has_result = exists().where(ResultRow.batch_id == RequestRow.batch_id,
                                ResultRow.custom_id == RequestRow.custom_id)
    source = select(RequestRow.batch_id, RequestRow.custom_id, RequestRow.line_no,
                    RequestRow.part_id, RequestRow.attempt, literal(False), literal(code),
                    literal(message), literal(0), literal(0), literal(0), literal(0),
                    literal(int(time.time()))).where(RequestRow.batch_id == batch_id,
                                                     ~has_result)
    if part_id is not None:
        source = source.where(RequestRow.part_id == part_id)
    session.execute(insert(ResultRow).from_select(
        ["batch_id", "custom_id", "line_no", "part_id", "attempt", "ok", "error_code",
         "error_message", "input_tokens", "output_tokens", "total_tokens", "rendered_bytes",
         "created_at"],
        source))


def _lock_batch(session: Session, batch_id: str) -> BatchRow | None:
    # Serialises part creation per batch (the (batch_id, seq) numbering).
    return session.get(BatchRow, batch_id, with_for_update=True, populate_existing=True)


def _retry_missing(session: Session, batch: BatchRow, part: PartRow, max_attempts: int,
                   part_max: int) -> list[str]:
    has_result = exists().where(ResultRow.batch_id == RequestRow.batch_id,
                                ResultRow.custom_id == RequestRow.custom_id)
    ids = list(session.scalars(
        select(RequestRow.id).where(RequestRow.part_id == part.id,
                                    RequestRow.attempt < max_attempts, ~has_result)
        .order_by(RequestRow.line_no)))
    return [_new_part(session, batch, ids[i:i + part_max], part.attempt + 1, bump=True)
            for i in range(0, len(ids), part_max)]


def _new_part(session: Session, batch: BatchRow, request_ids: list[int], attempt: int, *,
              bump: bool) -> str:
    now = time.time()
    seq = int(session.scalar(select(func.max(PartRow.seq))
                             .where(PartRow.batch_id == batch.id)) or 0) + 1
    part_id = new_part_id()
    size = 0
    for i in range(0, len(request_ids), 1_000):
        chunk = request_ids[i:i + 1_000]
        size += int(session.scalar(select(func.sum(func.length(RequestRow.body)))
                                   .where(RequestRow.id.in_(chunk))) or 0)
        values: dict[str, Any] = {"part_id": part_id, "state": "pending"}
        if bump:
            values["attempt"] = RequestRow.attempt + 1
        session.execute(update(RequestRow).where(RequestRow.id.in_(chunk)).values(**values)
                        .execution_options(synchronize_session=False))
    session.add(PartRow(id=part_id, batch_id=batch.id, seq=seq, attempt=attempt,
                        status=PartStatus.PENDING.value, request_count=len(request_ids),
                        byte_size=size + len(request_ids), estimated_tokens=size // 4 + 1,
                        next_poll_at=now, created_at=now, updated_at=now))
    session.add(EventRow(batch_id=batch.id, part_id=part_id, entity="part", from_status=None,
                         to_status=PartStatus.PENDING.value, at=now,
                         reason=f"attempt {attempt}: {len(request_ids)} requests"))
    return part_id
