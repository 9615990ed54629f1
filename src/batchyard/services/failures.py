"""Poison work: a step that keeps failing with the same unexpected error ends ``failed``.

Expected trouble (a provider that does not answer, a database connection lost) is retried
as long as it lasts: the sweep re-sends the nudge. Anything else that a step raises is
counted on its batch or part; after ``max_task_failures`` of the same kind in a row the
batch (or part) ends ``failed`` with ``internal_error`` naming the step, its event row is
written, and the batch frees its key's in-flight slot. The message names the exception
class only: an exception's text may quote SQL parameters (request bodies).
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from batchyard.db import batches, parts
from batchyard.db.transitions import note_failure, transition_batch, transition_part
from batchyard.domain.lifecycle import (
    SUBMIT_PART_STATUSES,
    BatchStatus,
    PartStatus,
    can_transition_batch,
)
from batchyard.errors import ProviderTransientError
from batchyard.services.container import Services
from batchyard.services.state import pipeline_log, request_finalize_if_done

#: Steps that act on a batch, and steps that act on a part.
BATCH_STEPS = frozenset({"prepare", "finalize", "cancel"})
PART_STEPS = frozenset({"submit", "ingest"})
#: Failures that are retried for as long as they last.
EXPECTED = (ProviderTransientError, OperationalError)


def give_up_on(svc: Services, step: str, object_id: str, exc: Exception) -> bool:
    """Count an unexpected failure of ``step``; True once its batch or part has been ended
    ``failed`` because of it (the task is then done)."""
    if isinstance(exc, EXPECTED) or step not in BATCH_STEPS | PART_STEPS:
        return False
    entity = "part" if step in PART_STEPS else "batch"
    limit = max(1, svc.settings.pipeline.max_task_failures)
    finalize_batch: str | None = None
    with svc.sessions.begin() as session:
        count = note_failure(session, entity, object_id, f"{step}:{type(exc).__qualname__}")
        if count < limit:
            return False
        message = (f"the {step} step failed {count} times with an unexpected error "
                   f"({type(exc).__name__})")
        error = {"code": "internal_error", "message": message, "param": None, "line": None}
        if entity == "part":
            finalize_batch = _fail_part(session, object_id, message, error)
            ended = finalize_batch is not None
        else:
            ended = _fail_batch(session, object_id, message, error)
    if finalize_batch:
        svc.nudge("finalize", finalize_batch)
    if ended:
        pipeline_log.error("%s %s ended failed: %s", entity, object_id, message)
    return ended


def _fail_part(session: Session, part_id: str, message: str,
               error: dict[str, Any]) -> str | None:
    """End the part failed (its batch ends failed once no part is live); its batch id."""
    part = parts.get_part(session, part_id)
    if part is None or not transition_part(
            session, part_id, (*SUBMIT_PART_STATUSES, PartStatus.INGESTING), PartStatus.FAILED,
            reason=message, provider_errors={"data": [error]}, last_error=message):
        return None
    request_finalize_if_done(session, part.batch_id)
    return part.batch_id


def _fail_batch(session: Session, batch_id: str, message: str, error: dict[str, Any]) -> bool:
    batch = batches.get_batch_row(session, batch_id)
    if batch is None:
        return False
    now = int(time.time())
    status = BatchStatus(batch.status)
    if status == BatchStatus.VALIDATING and batch.total:
        # Prepare broke after some parts were written (maybe sent): stop them as a cancel
        # would (the sweep nudges the cancel task); the batch ends cancelled with this error.
        return transition_batch(session, batch_id, status, BatchStatus.CANCELLING,
                                reason=message, errors={"object": "list", "data": [error]},
                                cancel_requested=True, cancelling_at=now)
    if status == BatchStatus.CANCELLING:  # a cancel ends cancelled, whatever broke
        return transition_batch(session, batch_id, status, BatchStatus.CANCELLED,
                                reason=message, cancelled_at=now)
    if status == BatchStatus.IN_PROGRESS:  # every end passes through finalizing
        transition_batch(session, batch_id, status, BatchStatus.FINALIZING, reason=message,
                         finalizing_at=now)
        status = BatchStatus.FINALIZING
    if not can_transition_batch(status, BatchStatus.FAILED):
        return False
    return transition_batch(session, batch_id, status, BatchStatus.FAILED, reason=message,
                            errors={"object": "list", "data": [error]}, failed_at=now)
