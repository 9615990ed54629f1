"""Beat-driven tasks for schedules and webhooks; the logic lives in the services.

Two tasks, both on the tick queue and both harmless to run twice or concurrently:
``batchyard.schedules.tick`` fires due schedules (exactly once per slot, by the run table's
unique key) and notes ended batches; ``batchyard.webhooks.deliver`` sends due webhook
attempts (claimed one by one, retries queued as new attempts). They are separate so a slow
webhook receiver never delays a fire time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from celery import Celery, Task

from batchyard.config import Settings
from batchyard.services import notifications, schedules
from batchyard.services.nudge import task_queue

logger = logging.getLogger(__name__)

SCHEDULER_TICK = "batchyard.schedules.tick"
WEBHOOK_DELIVER = "batchyard.webhooks.deliver"


def scheduler_tick(svc: Any) -> int:
    """One scheduler pass; returns how many runs it recorded."""
    report = schedules.tick(svc)
    if report.runs or report.lost_races:
        logger.info("schedules.tick", extra={"runs": len(report.runs),
                                             "lost_races": report.lost_races,
                                             "ended": report.ended})
    return len(report.runs)


def deliver_webhooks(svc: Any) -> int:
    """Send every due webhook attempt; returns how many were made."""
    return len(notifications.deliver_due(svc))


def register_schedule_tasks(app: Celery, svc: Callable[[], Any], settings: Settings) -> None:
    """Add the schedule/webhook tasks and their beat entries to the pipeline's Celery app."""
    queue = task_queue(settings, "tick")
    every = timedelta(seconds=max(0.05, settings.schedules.tick_seconds))
    # A tick nobody ran in time is worthless: the next one does the same work.
    options = {"queue": queue, "expires": max(1.0, every.total_seconds() * 2)}
    for name, func in ((SCHEDULER_TICK, scheduler_tick), (WEBHOOK_DELIVER, deliver_webhooks)):
        _task(app, svc, name, func)
        app.conf.task_routes = {**(app.conf.task_routes or {}), name: {"queue": queue}}
        app.conf.beat_schedule = {**(app.conf.beat_schedule or {}),
                                  name: {"task": name, "schedule": every, "options": options}}


def _task(app: Celery, svc: Callable[[], Any], name: str, func: Callable[[Any], int]) -> None:
    def run(self: Task) -> int:
        return func(svc())

    # Ticks are fire-and-forget (acks_late off): losing one loses nothing.
    app.task(name=name, bind=True, acks_late=False, shared=False)(run)
