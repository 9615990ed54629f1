"""The hand-off shared by the pipeline steps: once no part of a batch is live, it waits for
finalize. Statuses, stages and when a batch is due come from
:mod:`batchyard.domain.lifecycle`; the public status is derived there from the parts.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.orm import Session

from batchyard.db import batches, parts
from batchyard.db.transitions import transition_batch
from batchyard.domain.lifecycle import BatchStatus, derive_batch_status

#: A batch's story in plain sentences (created, each part submitted, provider status
#: changes, ingested, finished with its counts) at INFO; provider errors at WARNING with the
#: provider's own message. Ids only: never a key, a request body or an answer.
pipeline_log = logging.getLogger("batchyard.pipeline")


def request_finalize_if_done(session: Session, batch_id: str) -> bool:
    """When no part is live any more, hand the batch to finalize (True: nudge finalize).

    Not while the batch is ``validating``: prepare is still writing its parts (the first
    ones may end before the last is cut); its move to ``in_progress`` asks again.
    """
    batch = batches.get_batch_row(session, batch_id)
    if (batch is None or batch.status == BatchStatus.VALIDATING
            or parts.live_part_count(session, batch_id)):
        return False
    now = time.time()
    if not batches.mark_parts_done(session, batch_id, now):
        return False  # already handed on
    statuses = [p.status for p in parts.parts_of(session, batch_id)]
    target = derive_batch_status(batch.status, statuses, cancel_requested=batch.cancel_requested,
                                 prepared=True, validation_failed=False, finalized=False)
    if target != batch.status:
        transition_batch(session, batch_id, batch.status, target, reason="no live parts",
                         finalizing_at=int(now))
    return True
