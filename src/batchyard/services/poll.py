"""poll: the beat-driven check of provider batches whose next-poll time has come.

A tick claims due parts in one short transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL,
so several workers' ticks never take the same part), pushes their ``next_poll_at`` forward,
then asks the provider about all of them concurrently on a thread pool.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any

from batchyard.db import batches, parts
from batchyard.db.engine import is_sqlite
from batchyard.db.models import PartRow
from batchyard.db.transitions import transition_part
from batchyard.domain.lifecycle import POLL_PART_STATUSES, PartStatus, part_status_after_poll
from batchyard.domain.polling import next_poll_delay
from batchyard.errors import (
    ProviderNotFoundError,
    ProviderRejectedError,
    ProviderTransientError,
)
from batchyard.providers.base import BatchClient, ProviderBatch
from batchyard.services.container import Services
from batchyard.services.state import pipeline_log

logger = logging.getLogger(__name__)


def claim_due_parts(svc: Services, *, limit: int = 500) -> list[str]:
    """Take the parts whose poll time has come and push their next poll out (a lease)."""
    with svc.sessions.begin() as session:
        return parts.claim_due_parts(session, POLL_PART_STATUSES, now=time.time(),
                                     lease=svc.settings.pipeline.stale_seconds, limit=limit,
                                     skip_locked=not is_sqlite(svc.engine))


def poll_due_parts(svc: Services) -> int:
    """One tick: poll every due part concurrently; returns how many were polled."""
    ids = claim_due_parts(svc)
    if not ids:
        return 0
    workers = max(1, min(svc.settings.pipeline.poll_concurrency, len(ids)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
        for part_id, error in zip(ids, pool.map(lambda pid: _safe_poll(svc, pid), ids),
                                  strict=True):
            if error:
                logger.warning("part.poll_failed", extra={"part_id": part_id, "error": error})
    return len(ids)


def _safe_poll(svc: Services, part_id: str) -> str | None:
    try:
        poll_part(svc, part_id)
    except Exception as exc:  # one bad part must not stop the others in this tick
        logger.exception("part.poll_crashed", extra={"part_id": part_id})
        return repr(exc)
    return None


def poll_part(svc: Services, part_id: str) -> None:
    """Ask the provider about one part and record what it says."""
    with svc.sessions() as session:
        part = parts.get_part(session, part_id)
        batch = batches.get_batch_row(session, part.batch_id) if part else None
    if part is None or batch is None or part.status not in POLL_PART_STATUSES:
        return
    provider = svc.providers.batches_for(str(part.deployment))
    try:
        if batch.cancel_requested and part.status == PartStatus.SUBMITTED:
            snapshot = _cancel(svc, provider, part)
        else:
            snapshot = provider.retrieve_batch(str(part.provider_batch_id))
    except (ProviderTransientError, ProviderNotFoundError) as exc:
        # A 404 right after create is the provider catching up, not a lost batch.
        pipeline_log.warning("batch %s part %d: the provider did not answer the poll: %s",
                             part.batch_id, part.seq, exc)
        _schedule(svc, part, progressed=False, hurry=batch.cancel_requested, error=str(exc))
        return
    _record(svc, part, snapshot, hurry=batch.cancel_requested)


def _cancel(svc: Services, provider: BatchClient, part: PartRow) -> ProviderBatch:
    """Cancel the provider batch (a batch that already ended cannot be: just read it)."""
    try:
        snapshot = provider.cancel_batch(str(part.provider_batch_id))
    except ProviderRejectedError:
        snapshot = provider.retrieve_batch(str(part.provider_batch_id))
    with svc.sessions.begin() as session:
        transition_part(session, part.id, PartStatus.SUBMITTED, PartStatus.CANCELLING,
                        reason="batch cancelled", provider_status=snapshot.status)
    pipeline_log.info("batch %s part %d: provider batch %s cancelled (now %s)",
                      part.batch_id, part.seq, part.provider_batch_id, snapshot.status)
    return snapshot


def _record(svc: Services, part: PartRow, snapshot: ProviderBatch, *, hurry: bool) -> None:
    completed, failed = _counts(snapshot)
    if snapshot.status != part.provider_status:
        pipeline_log.info("batch %s part %d: provider status %s -> %s (%d completed, "
                          "%d failed of %d)", part.batch_id, part.seq, part.provider_status,
                          snapshot.status, completed, failed, part.request_count)
    if part_status_after_poll(PartStatus(part.status), snapshot.status) == PartStatus.INGESTING:
        errors = [asdict(err) for err in snapshot.errors]
        for err in snapshot.errors:
            pipeline_log.warning("batch %s part %d: the provider reports %s: %s (line %s)",
                                 part.batch_id, part.seq, err.code, err.message, err.line)
        with svc.sessions.begin() as session:
            moved = transition_part(
                session, part.id, POLL_PART_STATUSES, PartStatus.INGESTING,
                reason=f"provider {snapshot.status}", provider_status=snapshot.status,
                # Anthropic's one results file is reached through its batch id.
                provider_output_file_id=snapshot.output_file_id or (
                    snapshot.id if snapshot.results_url else None),
                provider_error_file_id=snapshot.error_file_id,
                provider_errors={"data": errors} if errors else None,
                provider_completed=completed, provider_failed=failed,
                next_poll_at=time.time())
        if moved:
            svc.nudge("ingest", part.id)
        return
    progressed = (snapshot.status != part.provider_status
                  or completed + failed != part.provider_done)
    _schedule(svc, part, progressed=progressed, hurry=hurry, status=snapshot.status,
              counts=(completed, failed))


def _counts(snapshot: ProviderBatch) -> tuple[int, int]:
    """(completed, failed) as the provider reports them now."""
    counts = snapshot.request_counts
    return (int(counts.completed), int(counts.failed)) if counts else (0, 0)


def _schedule(svc: Services, part: PartRow, *, progressed: bool, hurry: bool,
              status: str | None = None, counts: tuple[int, int] | None = None,
              error: str | None = None) -> None:
    """Store what the poll learned and when to poll next (soon while a cancel is under way);
    the batch's live counts follow the provider's."""
    cfg = svc.settings.pipeline
    delay = next_poll_delay(part.poll_interval, changed=progressed,
                            min_s=cfg.poll_min_seconds, max_s=cfg.poll_max_seconds,
                            factor=cfg.poll_backoff)
    values: dict[str, Any] = {"poll_interval": delay,
                              "next_poll_at": time.time() + (
                                  min(delay, cfg.first_poll_seconds) if hurry else delay)}
    if status is not None:
        values["provider_status"] = status
    if counts is not None:
        values.update(provider_done=sum(counts), provider_completed=counts[0],
                      provider_failed=counts[1])
    if error is not None:
        values["last_error"] = error[:1000]
    with svc.sessions.begin() as session:
        parts.record_poll(session, part.id, POLL_PART_STATUSES, values)
        if counts is not None:
            batches.refresh_live_counts(session, part.batch_id)
