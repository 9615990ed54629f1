"""cancel: stop a batch's remaining work, keeping every result already in SQL.

The API call only records the wish (``cancel_requested``, status ``cancelling``). This task
cancels parts not yet at the provider; parts at the provider are cancelled by their next poll
(which sees the flag), ingested like any other, and the batch ends ``cancelled``.
"""

from __future__ import annotations

import time

from batchyard.db import batches, parts
from batchyard.db.transitions import claim_batch, transition_part
from batchyard.domain.lifecycle import CANCEL_STAGES, BatchStage, PartStatus
from batchyard.services.container import Services
from batchyard.services.prepare import end_cancelled_before_split
from batchyard.services.state import request_finalize_if_done


def cancel_batch_work(svc: Services, batch_id: str) -> None:
    """Cancel what has not reached the provider and poll the rest soon."""
    with svc.sessions.begin() as session:
        if not claim_batch(session, batch_id, svc.settings.pipeline.stale_seconds,
                           stages=CANCEL_STAGES):
            return
        batch = batches.get_batch_row(session, batch_id)
        if batch is None or not batch.cancel_requested:
            return
        now = time.time()
        # Cancelled while prepare was splitting it: no part is written after the cancel
        # (prepare's compare-and-set needs ``validating``), so the parts here are all of them.
        if batch.stage == BatchStage.ACCEPTED and end_cancelled_before_split(session, batch_id):
            return
        for part in parts.parts_of(session, batch_id):
            if part.status == PartStatus.PENDING:
                transition_part(session, part.id, PartStatus.PENDING, PartStatus.CANCELLED,
                                reason="batch cancelled")
            elif part.status == PartStatus.SUBMITTED:
                parts.set_next_poll(session, part.id, now)  # the next tick cancels it
        finalize = request_finalize_if_done(session, batch_id)
        if not finalize:
            batches.park(session, batch_id, now)
    if finalize:
        svc.nudge("finalize", batch_id)
