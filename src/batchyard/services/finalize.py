"""finalize: once no part is live, settle the public batch from our own rows.

Counts, token and cost totals and the result files' sizes are sums over the parts' sums
(kept at ingest, see ``db.results.part_totals_sum``), not a scan of the result rows; for
batches with parts older than those sums, SQL aggregates over the result rows. The output
and error files are FileRows (kind output/error) whose bytes are rendered from the result
rows on demand, so results outlive the provider's retention. Safe to run twice (stable file
ids, CAS status).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.orm import Session

from batchyard.db import batches, files, parts, results
from batchyard.db.costs import refresh_batch_totals
from batchyard.db.models import BatchRow
from batchyard.db.transitions import claim_batch, transition_batch
from batchyard.domain.lifecycle import (
    TERMINAL_BATCH_STATUSES,
    BatchStage,
    BatchStatus,
    derive_batch_status,
)
from batchyard.services.container import Services
from batchyard.services.ids import result_file_id
from batchyard.services.retry import past_window
from batchyard.services.state import pipeline_log

logger = logging.getLogger(__name__)

#: The final error of requests still unanswered when a batch ends this way.
_UNANSWERED_CODE = {BatchStatus.CANCELLED: "batch_cancelled",
                    BatchStatus.EXPIRED: "batch_expired"}


def finalize_batch(svc: Services, batch_id: str) -> str | None:
    """Settle a batch whose parts are all done; returns its final status (None: not yet)."""
    with svc.sessions.begin() as session:
        if not claim_batch(session, batch_id, svc.settings.pipeline.stale_seconds,
                           stages=[BatchStage.FINALIZING]):
            return None
        batch = batches.get_batch_row(session, batch_id)
        if batch is None or parts.live_part_count(session, batch_id):
            return None  # the last part to end will ask again
        status = _final_status(session, batch)
        if status not in TERMINAL_BATCH_STATUSES:
            return None
        total = batch.total or parts.count_requests(session, batch_id)
        summed = results.part_totals_sum(session, batch_id)
        # Every request answered (the parts' sums say so): no scan for unanswered ones.
        complete = summed is not None and summed["completed"] + summed["failed"] == total
        if status != BatchStatus.FAILED and not complete:
            results.close_missing(session, batch_id, None,
                                  _UNANSWERED_CODE.get(status, "no_result"),
                                  f"the batch was {status} first")
        current = batch.status
    with svc.sessions.begin() as session:
        refresh_batch_totals(session, batch_id)  # cost and tokens, as the counts below
        values: dict[str, Any] = {**results.result_totals(session, batch_id), "total": total}
        values.update(_result_files(session, batch_id, values))
        if status == BatchStatus.FAILED:
            values["errors"] = {"object": "list",
                                "data": parts.failed_part_errors(session, batch_id)}
        values[f"{status}_at"] = int(time.time())
        if not transition_batch(session, batch_id, current, status, reason="all parts done",
                                **values):
            return None  # moved meanwhile (a cancel): the next finalize settles it
    pipeline_log.info("batch %s %s: %d completed, %d failed of %d requests", batch_id,
                      status.value, values["completed"], values["failed"], values["total"])
    return status.value


def _final_status(session: Session, batch: BatchRow) -> BatchStatus:
    """The status the batch ends with, derived from its parts (every one is done)."""
    closed = past_window(batch)
    expired = results.count_with_error(session, batch.id, "batch_expired") if closed else 0
    return derive_batch_status(
        batch.status, [p.status for p in parts.parts_of(session, batch.id)],
        cancel_requested=batch.cancel_requested, prepared=True, validation_failed=False,
        finalized=True, window_closed=closed, expired_requests=expired)


def _result_files(session: Session, batch_id: str, counts: dict[str, Any]) -> dict[str, Any]:
    batch = batches.get_batch_row(session, batch_id)
    owner = batch.owner_key_id if batch else None
    out: dict[str, Any] = {}
    for kind, ok, present in (("output", True, counts["completed"]),
                              ("error", False, counts["failed"])):
        if not present:
            continue
        file_id = result_file_id(batch_id, kind)
        files.ensure_result_file(session, file_id=file_id, batch_id=batch_id, owner=owner,
                                 kind=kind, size=results.rendered_size(session, batch_id, ok=ok))
        out[f"{kind}_file_id"] = file_id
    return out
