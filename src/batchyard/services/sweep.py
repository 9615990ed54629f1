"""sweep + tick: the beat-driven heartbeat that fans polls out and re-sends lost nudges.

The tick polls nothing itself: it sends ``poll`` nudges for the parts due (one per
``poll_claim_size``), which any worker runs (:mod:`batchyard.services.poll`).

A Celery message is only a nudge, and nudges get lost (a worker killed mid-task, a broker
flushed). The database knows what is due: parts and batches whose lease (``next_poll_at`` /
``due_at``) ran out more than ``stale_seconds`` ago are nudged again. A duplicate nudge is
harmless: the task's claim lets exactly one copy act.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from batchyard.db import batches, parts
from batchyard.domain.lifecycle import (
    CANCEL_STAGES,
    SUBMIT_PART_STATUSES,
    BatchStage,
    PartStatus,
)
from batchyard.services.container import Services
from batchyard.services.poll import send_poll_nudges

logger = logging.getLogger(__name__)


@dataclass
class SweepReport:
    """What one sweep re-nudged (task name -> ids)."""

    nudged: dict[str, list[str]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """How many nudges were sent."""
        return sum(len(ids) for ids in self.nudged.values())


def tick(svc: Services) -> int:
    """One beat tick: nudge ``poll`` tasks for the due provider batches, then sweep;
    returns the poll nudges sent."""
    sent = send_poll_nudges(svc)
    sweep(svc)
    return sent


def sweep(svc: Services, *, limit: int = 500) -> SweepReport:
    """Re-nudge every part and batch whose work is overdue."""
    now = time.time()
    overdue = now - svc.settings.pipeline.stale_seconds
    report = SweepReport()
    with svc.sessions() as session:
        report.nudged["submit"] = parts.overdue_part_ids(session, SUBMIT_PART_STATUSES,
                                                         before=overdue, limit=limit)
        report.nudged["ingest"] = parts.overdue_part_ids(session, [PartStatus.INGESTING],
                                                         before=overdue, limit=limit)
        report.nudged["prepare"] = batches.overdue_batch_ids(
            session, stages=[BatchStage.ACCEPTED], cancel_requested=False, before=overdue,
            limit=limit)
        report.nudged["finalize"] = batches.overdue_batch_ids(
            session, stages=[BatchStage.FINALIZING], before=overdue, limit=limit)
        report.nudged["cancel"] = batches.overdue_batch_ids(
            session, stages=CANCEL_STAGES, cancel_requested=True, before=overdue, limit=limit)
    for task, ids in report.nudged.items():
        for object_id in ids:
            svc.nudge(task, object_id)
    if report.total:
        logger.info("sweep.nudged", extra={k: len(v) for k, v in report.nudged.items()})
    return report
