"""cancel: stop a batch's remaining work, keeping every result already in SQL.

The API call only records the wish (``cancel_requested``, status ``cancelling``). This task
cancels parts not yet at the provider; parts at the provider are cancelled by the poll tick
(which sees the flag), ingested like any other, and the batch ends ``cancelled``.
"""

from __future__ import annotations

import time

from sqlalchemy import select

from batchyard.db.models import BatchRow, PartRow
from batchyard.db.transitions import claim_batch, transition_batch, transition_part
from batchyard.domain.lifecycle import BatchStatus, PartStatus
from batchyard.services.container import Services
from batchyard.services.state import (
    PARKED,
    STAGE_ACCEPTED,
    STAGE_DONE,
    STAGE_RUNNING,
    request_finalize_if_done,
)


def cancel_batch_work(svc: Services, batch_id: str) -> None:
    """Cancel what has not reached the provider and poll the rest soon."""
    with svc.sessions.begin() as session:
        if not claim_batch(session, batch_id, svc.settings.pipeline.stale_seconds,
                           stages=[STAGE_ACCEPTED, STAGE_RUNNING]):
            return
        batch = session.get(BatchRow, batch_id)
        if batch is None or not batch.cancel_requested:
            return
        if batch.stage == STAGE_ACCEPTED:
            now = time.time()
            transition_batch(session, batch_id, BatchStatus.CANCELLING, BatchStatus.CANCELLED,
                             reason="cancelled before validation", cancelled_at=int(now),
                             stage=STAGE_DONE, due_at=now + PARKED)
            return
        now = time.time()
        for part in session.scalars(select(PartRow).where(PartRow.batch_id == batch_id)):
            if part.status == PartStatus.PENDING:
                transition_part(session, part.id, PartStatus.PENDING, PartStatus.CANCELLED,
                                reason="batch cancelled")
            elif part.status == PartStatus.SUBMITTED:
                part.next_poll_at = now  # the next tick sends the provider cancel
        finalize = request_finalize_if_done(session, batch_id)
        if not finalize:
            session.get(BatchRow, batch_id).due_at = now + PARKED  # type: ignore[union-attr]
    if finalize:
        svc.nudge("finalize", batch_id)
