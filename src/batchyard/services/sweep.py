"""sweep + tick: the beat-driven heartbeat that polls due parts and re-sends lost nudges.

A Celery message is only a nudge, and nudges get lost (a worker killed mid-task, a broker
flushed). The database knows what is due: parts and batches whose lease (``next_poll_at`` /
``due_at``) ran out more than ``stale_seconds`` ago are nudged again. A duplicate nudge is
harmless: the task's claim lets exactly one copy act.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy import select

from batchyard.db.models import BatchRow, PartRow
from batchyard.domain.lifecycle import SUBMIT_PART_STATUSES, PartStatus
from batchyard.services.container import Services
from batchyard.services.poll import poll_due_parts
from batchyard.services.state import STAGE_ACCEPTED, STAGE_FINALIZING, STAGE_RUNNING

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
    """One beat tick: poll due provider batches, then sweep; returns parts polled."""
    polled = poll_due_parts(svc)
    sweep(svc)
    return polled


def sweep(svc: Services, *, limit: int = 500) -> SweepReport:
    """Re-nudge every part and batch whose work is overdue."""
    now = time.time()
    overdue = now - svc.settings.pipeline.stale_seconds
    report = SweepReport()
    with svc.sessions() as session:
        report.nudged["submit"] = list(session.scalars(
            select(PartRow.id).where(PartRow.status.in_(SUBMIT_PART_STATUSES),
                                     PartRow.next_poll_at <= overdue).limit(limit)))
        report.nudged["ingest"] = list(session.scalars(
            select(PartRow.id).where(PartRow.status == PartStatus.INGESTING,
                                     PartRow.next_poll_at <= overdue).limit(limit)))
        report.nudged["prepare"] = list(session.scalars(
            select(BatchRow.id).where(BatchRow.stage == STAGE_ACCEPTED,
                                      BatchRow.cancel_requested.is_(False),
                                      BatchRow.due_at <= overdue).limit(limit)))
        report.nudged["finalize"] = list(session.scalars(
            select(BatchRow.id).where(BatchRow.stage == STAGE_FINALIZING,
                                      BatchRow.due_at <= overdue).limit(limit)))
        report.nudged["cancel"] = list(session.scalars(
            select(BatchRow.id).where(BatchRow.stage.in_([STAGE_ACCEPTED, STAGE_RUNNING]),
                                      BatchRow.cancel_requested.is_(True),
                                      BatchRow.due_at <= overdue).limit(limit)))
    for task, ids in report.nudged.items():
        for object_id in ids:
            svc.nudge(task, object_id)
    if report.total:
        logger.info("sweep.nudged", extra={k: len(v) for k, v in report.nudged.items()})
    return report
