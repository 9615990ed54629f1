"""Beat-driven tasks for schedules and webhooks; the logic lives in the services.

Both run on the tick queue and are harmless to run twice or concurrently:
``batchyard.schedules.tick`` fires due schedules (exactly once per slot, by the run table's
unique key) and notes ended batches; ``batchyard.webhooks.deliver`` sends due webhook
attempts (claimed one by one, retries queued as new attempts). Their names, queues and
intervals are entries of :data:`batchyard.broker.tasks.TASKS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from celery import Celery, Task

from batchyard.broker.tasks import task_name
from batchyard.services import notifications, schedules
from batchyard.services.container import Services

logger = logging.getLogger(__name__)

SCHEDULER_TICK = task_name("schedules.tick")
WEBHOOK_DELIVER = task_name("webhooks.deliver")


def scheduler_tick(svc: Services) -> int:
    """One scheduler pass; returns how many runs it recorded."""
    report = schedules.tick(svc)
    if report.runs or report.lost_races:
        logger.info("schedules.tick", extra={"runs": len(report.runs),
                                             "lost_races": report.lost_races,
                                             "ended": report.ended})
    return len(report.runs)


def deliver_webhooks(svc: Services) -> int:
    """Send every due webhook attempt; returns how many were made."""
    return len(notifications.deliver_due(svc))


#: Task name -> body, for the beat-driven tasks of this module.
BEAT_TASKS: dict[str, Callable[[Services], int]] = {
    SCHEDULER_TICK: scheduler_tick, WEBHOOK_DELIVER: deliver_webhooks,
}


def register_schedule_tasks(app: Celery, svc: Callable[[], Services]) -> None:
    """Register only the schedule/webhook tasks on ``app`` (tests drive them alone)."""
    for name, func in BEAT_TASKS.items():
        _task(app, svc, name, func)


def _task(app: Celery, svc: Callable[[], Services], name: str,
          func: Callable[[Services], int]) -> None:
    def run(self: Task) -> int:
        return func(svc())

    # Ticks are fire-and-forget (acks_late off): losing one loses nothing.
    app.task(name=name, bind=True, acks_late=False, shared=False)(run)
