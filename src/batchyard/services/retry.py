"""retry: what happens to a part's requests that have no final result yet.

After ingest, a request of the part without a result row was either retryable (429, 5xx,
batch_expired, request_timeout) or never answered (expired / completed without output). It
goes into a new part with ``attempt + 1`` while attempts remain; otherwise it gets a final
error row. A part whose provider batch failed for quota (token_limit_exceeded) moves all its
requests, at the same attempt, into a new part that waits for the deployment's block.
"""

from __future__ import annotations

import time

from sqlalchemy.orm import Session

from batchyard.db import batches, parts
from batchyard.db.deployment_state import block_deployment
from batchyard.db.models import BatchRow, PartRow
from batchyard.db.results import close_missing
from batchyard.db.transitions import transition_part
from batchyard.domain.lifecycle import PartStatus
from batchyard.metrics.counters import TOKEN_LIMIT_EXCEEDED
from batchyard.services.container import Services
from batchyard.services.ids import new_part_id
from batchyard.services.state import request_finalize_if_done

#: Final error codes for requests that never got an answer, by provider end status.
_MISSING_CODES = {"expired": "batch_expired", "cancelled": "batch_cancelled"}


def settle_part(svc: Services, part_id: str) -> tuple[list[str], bool]:
    """Retry or close the part's unanswered requests and end the part (new parts, finalize?)."""
    cfg = svc.settings.pipeline
    with svc.sessions.begin() as session:
        part = parts.get_part(session, part_id)
        batch = batches.get_batch_row(session, part.batch_id, lock=True) if part else None
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
        # The lock serialises part creation per batch (the (batch_id, seq) numbering).
        batch = batches.get_batch_row(session, part.batch_id, lock=True)
        if batch is None or not transition_part(
                session, part.id, PartStatus.INGESTING, PartStatus.REQUEUED,
                reason="token_limit_exceeded"):
            return [], False
        block_deployment(session, str(part.deployment), until)
        TOKEN_LIMIT_EXCEEDED.labels(deployment=str(part.deployment)).inc()
        if batch.cancel_requested:
            return [], request_finalize_if_done(session, batch.id)
        ids = parts.request_ids(session, part.id)
        new_id = _new_part(session, batch, ids, part.attempt, bump=False)
    return [new_id], False


def _retry_missing(session: Session, batch: BatchRow, part: PartRow, max_attempts: int,
                   part_max: int) -> list[str]:
    ids = parts.request_ids(session, part.id, unanswered_below=max_attempts)
    return [_new_part(session, batch, ids[i:i + part_max], part.attempt + 1, bump=True)
            for i in range(0, len(ids), part_max)]


def _new_part(session: Session, batch: BatchRow, request_ids: list[int], attempt: int, *,
              bump: bool) -> str:
    part_id = new_part_id()
    seq = parts.next_seq(session, batch.id)
    size = parts.move_requests(session, request_ids, part_id, bump=bump)
    parts.add_part(session, part_id=part_id, batch_id=batch.id, seq=seq, attempt=attempt,
                   request_count=len(request_ids), byte_size=size + len(request_ids),
                   estimated_tokens=size // 4 + 1, now=time.time(),
                   reason=f"attempt {attempt}: {len(request_ids)} requests")
    return part_id
