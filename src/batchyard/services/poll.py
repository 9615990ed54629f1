"""poll: check provider batches whose next-poll time has come, from any worker.

The beat tick only counts due parts and sends one ``poll`` nudge per ``poll_claim_size`` of
them (:func:`send_poll_nudges`); any worker runs them, so N workers poll N times as much.
A ``poll`` task (:func:`poll_due_parts`):

1. claims up to ``poll_claim_size`` due parts in one statement that also pushes their
   ``next_poll_at`` out by a lease and returns what the poll needs, the batch's cancel flag
   included (``FOR UPDATE SKIP LOCKED`` on PostgreSQL: two tasks never take the same part);
2. asks the provider about them concurrently, on each deployment's shared poll client
   (connections kept alive, a bounded read timeout), with no retries of its own: a failed
   poll is just rescheduled;
3. writes back in one transaction: executemany UPDATEs of what changed, and status moves
   (``transition_part``, with their event rows) for provider batches that ended; then each
   touched batch's live counts, once per batch.

A 429 pauses polls of the whole deployment (``deployment_state.poll_paused_until``) for the
provider's Retry-After: claims skip its parts until then, and the task's other parts of that
deployment are put back without being asked. A worker killed mid-way leaves its claimed
parts leased; they are polled again once the lease runs out.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Row

from batchyard.db import batches, deployment_state, parts
from batchyard.db.engine import is_sqlite
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
from batchyard.services.crash import crash_point
from batchyard.services.state import pipeline_log

logger = logging.getLogger(__name__)

#: The object id a ``poll`` nudge carries: a poll claims whatever is due, not one object.
ANY_DUE = "due"
#: Most ``poll`` nudges one tick sends (a backlog bigger than this is taken by later ticks).
MAX_POLL_NUDGES = 1_000


def send_poll_nudges(svc: Services) -> int:
    """Send one ``poll`` nudge per ``poll_claim_size`` due parts; returns how many."""
    with svc.sessions() as session:
        due = parts.count_due_polls(session, POLL_PART_STATUSES, now=time.time())
    count = min(MAX_POLL_NUDGES, math.ceil(due / max(1, svc.settings.pipeline.poll_claim_size)))
    for _ in range(count):
        svc.nudge("poll", ANY_DUE)
    return count


@dataclass
class _Answer:
    """What the provider said about one claimed part."""

    snapshot: ProviderBatch | None = None
    #: Why there is no snapshot (the provider did not answer, or said 404 / 429).
    error: str | None = None
    #: Polls of the part's deployment are paused until then (a 429, here or by a sibling).
    paused_until: float | None = None
    #: Something unexpected went wrong: leave the part leased (it is polled again later).
    crashed: bool = False


class _Pauses:
    """The deployments a 429 paused during one poll task (shared by its threads)."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, deployment: str) -> float | None:
        with self._lock:
            return self._until.get(deployment)

    def add(self, deployment: str, until: float) -> bool:
        """Record a pause; True when it is new (or longer) for this task."""
        with self._lock:
            if self._until.get(deployment, 0.0) >= until:
                return False
            self._until[deployment] = until
            return True


def poll_due_parts(svc: Services, _hint: str = ANY_DUE) -> int:
    """One ``poll`` task: claim due parts, ask the provider, record the answers; returns
    how many parts were claimed."""
    claimed = _claim(svc)
    if not claimed:
        return 0
    pauses = _Pauses()
    workers = max(1, min(svc.settings.pipeline.poll_concurrency, len(claimed)))
    try:
        if workers == 1:
            answers = [_ask(svc, part, pauses) for part in claimed]
        else:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="poll") as pool:
                answers = list(pool.map(lambda part: _ask(svc, part, pauses), claimed))
        crash_point(svc.settings, "mid_poll")
        _record(svc, claimed, answers, pauses)
    except Exception:
        _release(svc, [part.id for part in claimed])
        raise
    return len(claimed)


def _release(svc: Services, part_ids: list[str]) -> None:
    """Best effort after a failed write: the claimed parts are due again at once instead of
    after their lease (a part already written is merely polled once more)."""
    try:
        with svc.engine.begin() as conn:
            parts.record_polls(conn, POLL_PART_STATUSES,
                               [{"id": pid, "next_poll_at": time.time()} for pid in part_ids])
    except Exception:
        logger.warning("poll.release_failed", exc_info=True, extra={"parts": len(part_ids)})


def _claim(svc: Services) -> list[Row[Any]]:
    cfg = svc.settings.pipeline
    with svc.engine.begin() as conn:
        return parts.claim_polls(conn, POLL_PART_STATUSES, now=time.time(),
                                 lease=cfg.stale_seconds, limit=max(1, cfg.poll_claim_size),
                                 skip_locked=not is_sqlite(svc.engine))


def _ask(svc: Services, part: Row[Any], pauses: _Pauses) -> _Answer:
    """Ask the provider about one part (cancel it first when its batch was cancelled)."""
    deployment = str(part.deployment)
    if (until := pauses.get(deployment)) is not None:
        return _Answer(paused_until=until)
    try:
        provider = svc.providers.poller_for(deployment)
        if part.cancel_requested and part.status == PartStatus.SUBMITTED:
            return _Answer(snapshot=_cancel(svc, provider, part))
        return _Answer(snapshot=provider.retrieve_batch(str(part.provider_batch_id)))
    except ProviderTransientError as exc:
        if exc.status == 429:
            return _rate_limited(svc, part, exc, pauses)
        return _no_answer(part, exc)
    except ProviderNotFoundError as exc:  # right after create: the provider catching up
        return _no_answer(part, exc)
    except Exception as exc:  # one bad part must not stop the others of this task
        logger.exception("part.poll_crashed", extra={"part_id": part.id})
        return _Answer(error=repr(exc), crashed=True)


def _no_answer(part: Row[Any], exc: Exception) -> _Answer:
    pipeline_log.warning("batch %s part %d: the provider did not answer the poll: %s",
                         part.batch_id, part.seq, exc)
    return _Answer(error=str(exc))


def _rate_limited(svc: Services, part: Row[Any], exc: ProviderTransientError,
                  pauses: _Pauses) -> _Answer:
    """A 429: pause polls of the whole deployment (recorded at once, for every worker)."""
    wait = exc.retry_after if exc.retry_after and exc.retry_after > 0 else (
        svc.settings.pipeline.poll_rate_limit_seconds)
    until = time.time() + wait
    deployment = str(part.deployment)
    if pauses.add(deployment, until):
        with svc.engine.begin() as conn:
            deployment_state.pause_polls(conn, deployment, until)
        pipeline_log.warning("deployment %s: the provider rate-limited polling (%s); polls of "
                             "its parts pause for %.1f s", deployment, exc, wait)
    return _Answer(error=str(exc), paused_until=until)


def _cancel(svc: Services, provider: BatchClient, part: Row[Any]) -> ProviderBatch:
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


@dataclass
class _Plan:
    """The writes of one poll task."""

    updates: list[dict[str, Any]]
    #: (part, snapshot) of provider batches that ended: moved to ``ingesting``.
    ended: list[tuple[Row[Any], ProviderBatch]]
    #: Batches whose live counts may have grown.
    recount: set[str]


def _record(svc: Services, claimed: Sequence[Row[Any]], answers: Sequence[_Answer],
            pauses: _Pauses) -> None:
    plan = _Plan(updates=[], ended=[], recount=set())
    for part, answer in zip(claimed, answers, strict=True):
        _plan_one(svc, part, answer, pauses, plan)
    moved: list[str] = []
    with svc.sessions.begin() as session:
        if plan.updates:
            parts.record_polls(session.connection(), POLL_PART_STATUSES, plan.updates)
        for part, snapshot in plan.ended:
            if _move_to_ingest(session, part, snapshot):
                moved.append(part.id)
    if plan.recount:
        # After the parts' commit, in a transaction of its own: the last of two concurrent
        # tasks to add up a batch's parts then sees both tasks' writes (a sum read before
        # the other's commit could only raise the counts less, never lower them).
        with svc.sessions.begin() as session:
            for batch_id in sorted(plan.recount):
                batches.refresh_live_counts(session, batch_id)
    for part_id in moved:
        svc.nudge("ingest", part_id)


def _plan_one(svc: Services, part: Row[Any], answer: _Answer, pauses: _Pauses,
              plan: _Plan) -> None:
    if answer.crashed:
        return
    paused = answer.paused_until or pauses.get(str(part.deployment))
    if answer.snapshot is None and paused is not None:
        # Not the part's fault: its backoff is kept, it waits for the deployment.
        write: dict[str, Any] = {"id": part.id, "next_poll_at": paused}
        if answer.error is not None:
            write["last_error"] = answer.error[:1000]
        plan.updates.append(write)
        return
    if answer.snapshot is None:
        plan.updates.append(_schedule(svc, part, progressed=False, error=answer.error))
        return
    snapshot = answer.snapshot
    completed, failed = _counts(snapshot)
    if snapshot.status != part.provider_status:
        pipeline_log.info("batch %s part %d: provider status %s -> %s (%d completed, "
                          "%d failed of %d)", part.batch_id, part.seq, part.provider_status,
                          snapshot.status, completed, failed, part.request_count)
    if part_status_after_poll(PartStatus(part.status), snapshot.status) == PartStatus.INGESTING:
        plan.ended.append((part, snapshot))
        return
    progressed = (snapshot.status != part.provider_status
                  or completed + failed != part.provider_done)
    write = _schedule(svc, part, progressed=progressed)
    if progressed:
        write.update(provider_status=snapshot.status, provider_done=completed + failed,
                     provider_completed=completed, provider_failed=failed)
        if (completed, failed) != (part.provider_completed, part.provider_failed):
            plan.recount.add(part.batch_id)
    plan.updates.append(write)


def _move_to_ingest(session: Any, part: Row[Any], snapshot: ProviderBatch) -> bool:
    completed, failed = _counts(snapshot)
    errors = [asdict(err) for err in snapshot.errors]
    for err in snapshot.errors:
        pipeline_log.warning("batch %s part %d: the provider reports %s: %s (line %s)",
                             part.batch_id, part.seq, err.code, err.message, err.line)
    return transition_part(
        session, part.id, POLL_PART_STATUSES, PartStatus.INGESTING,
        reason=f"provider {snapshot.status}", provider_status=snapshot.status,
        # Anthropic's one results file is reached through its batch id.
        provider_output_file_id=snapshot.output_file_id or (
            snapshot.id if snapshot.results_url else None),
        provider_error_file_id=snapshot.error_file_id,
        provider_errors={"data": errors} if errors else None,
        provider_completed=completed, provider_failed=failed,
        next_poll_at=time.time())


def _counts(snapshot: ProviderBatch) -> tuple[int, int]:
    """(completed, failed) as the provider reports them now."""
    counts = snapshot.request_counts
    return (int(counts.completed), int(counts.failed)) if counts else (0, 0)


def _schedule(svc: Services, part: Row[Any], *, progressed: bool,
              error: str | None = None) -> dict[str, Any]:
    """When to poll next (soon while a cancel is under way), as a write of the part."""
    cfg = svc.settings.pipeline
    delay = next_poll_delay(part.poll_interval, changed=progressed,
                            min_s=cfg.poll_min_seconds, max_s=cfg.poll_max_seconds,
                            factor=cfg.poll_backoff)
    hurry = bool(part.cancel_requested)
    write: dict[str, Any] = {"id": part.id, "poll_interval": delay,
                             "next_poll_at": time.time() + (
                                 min(delay, cfg.first_poll_seconds) if hurry else delay)}
    if error is not None:
        write["last_error"] = error[:1000]
    return write
