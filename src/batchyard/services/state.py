"""Pipeline bookkeeping shared by the pipeline modules: batch stages and the finalize hand-off.

Statuses (and which parts are live) come from :mod:`batchyard.domain.lifecycle`; a stage is
the sweep's view of which task a batch waits for, not a status.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from batchyard.db.models import BatchRow, PartRow
from batchyard.db.transitions import transition_batch
from batchyard.domain.lifecycle import LIVE_PART_STATUSES, BatchStatus

#: Batch stages (the sweep's view; the public status is separate).
STAGE_ACCEPTED, STAGE_RUNNING, STAGE_FINALIZING, STAGE_DONE = (
    "accepted", "running", "finalizing", "finalized")

#: A batch that needs nothing until a part says so is parked this far in the future.
PARKED = 10 * 365 * 86400.0


def live_part_count(session: Session, batch_id: str) -> int:
    """How many of a batch's parts still need work."""
    stmt = select(func.count()).select_from(PartRow).where(
        PartRow.batch_id == batch_id, PartRow.status.in_(LIVE_PART_STATUSES))
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
        transition_batch(session, batch_id, BatchStatus.IN_PROGRESS, BatchStatus.FINALIZING,
                         reason="no live parts", finalizing_at=int(now))
    return bool(moved)

