"""Pipeline vocabulary shared by the pipeline modules: part statuses and batch stages."""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from batchyard.db.models import BatchRow, PartRow
from batchyard.db.transitions import transition_batch

#: Part statuses before the provider batch exists (driven by the submit task).
SUBMIT_STATUSES = ("pending", "uploading", "uploaded", "submitting")
#: Part statuses while the provider runs it (driven by the poll tick).
POLL_STATUSES = ("submitted", "cancelling")
#: A part whose provider batch ended and whose results are being read.
INGEST_STATUS = "ingesting"
#: Parts that need no more work: done, failed at the provider, cancelled before submit,
#: or requeued (its requests moved to a new part after token_limit_exceeded).
TERMINAL_STATUSES = ("ingested", "failed", "cancelled", "requeued")
LIVE_STATUSES = (*SUBMIT_STATUSES, *POLL_STATUSES, INGEST_STATUS)

#: Batch stages (the sweep's view; the public status is separate).
STAGE_ACCEPTED, STAGE_RUNNING, STAGE_FINALIZING, STAGE_DONE = (
    "accepted", "running", "finalizing", "finalized")

#: A batch that needs nothing until a part says so is parked this far in the future.
PARKED = 10 * 365 * 86400.0


def live_part_count(session: Session, batch_id: str) -> int:
    """How many of a batch's parts still need work."""
    stmt = select(func.count()).select_from(PartRow).where(
        PartRow.batch_id == batch_id, PartRow.status.in_(LIVE_STATUSES))
    return int(session.scalar(stmt) or 0)


def request_finalize_if_done(session: Session, batch_id: str) -> bool:
    """When no part is live any more, move the batch to finalizing (True: nudge finalize)."""
    if live_part_count(session, batch_id):
        return False
    now = time.time()
    moved = session.execute(
        update(BatchRow).where(BatchRow.id == batch_id,
                               BatchRow.stage.in_((STAGE_ACCEPTED, STAGE_RUNNING)))
        .values(stage=STAGE_FINALIZING, due_at=now)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    if moved:
        transition_batch(session, batch_id, "in_progress", "finalizing",
                         reason="no live parts", finalizing_at=int(now))
    return bool(moved)


def statuses(values: Iterable[str]) -> list[str]:
    """A list for ``IN`` clauses."""
    return list(values)
