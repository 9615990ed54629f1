"""The one task table: every Celery task's name, queue, acknowledgement and beat interval.

The worker registers, routes and schedules its tasks from :data:`TASKS`; nudges are sent by
the same names to the same queues. A beat task's interval is read from Settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from batchyard.config import Settings


@dataclass(frozen=True)
class TaskSpec:
    """One Celery task of batchyard."""

    #: Short name: ``prepare`` is registered as ``batchyard.prepare``.
    short: str
    #: Queue suffix: ``batches`` (batch-level work), ``parts`` (part-level I/O), ``tick``.
    queue: str
    #: For beat-driven tasks: their interval in seconds, read from Settings.
    every: Callable[[Settings], float] | None = None

    @property
    def name(self) -> str:
        """The registered Celery name."""
        return task_name(self.short)

    @property
    def acks_late(self) -> bool:
        """Beat ticks are fire-and-forget (losing one loses nothing: the next does the work);
        pipeline steps are acknowledged only once done, so a killed worker's task returns."""
        return self.every is None


TASKS: tuple[TaskSpec, ...] = (
    TaskSpec("prepare", "batches"),
    TaskSpec("finalize", "batches"),
    TaskSpec("cancel", "batches"),
    TaskSpec("submit", "parts"),
    # Claims a slice of the due parts and polls them; the tick sends one per slice.
    TaskSpec("poll", "parts"),
    TaskSpec("ingest", "parts"),
    TaskSpec("tick", "tick", every=lambda s: s.pipeline.tick_seconds),
    # Fires due schedules and notes ended batches.
    TaskSpec("schedules.tick", "tick", every=lambda s: s.schedules.tick_seconds),
    # Sends due webhook attempts; separate so a slow receiver never delays a fire time.
    TaskSpec("webhooks.deliver", "tick", every=lambda s: s.schedules.tick_seconds),
)
_BY_SHORT = {spec.short: spec for spec in TASKS}

#: Pipeline steps (nudged with an object id) and their queue suffixes.
TASK_QUEUES = {spec.short: spec.queue for spec in TASKS}


def task_name(short: str) -> str:
    """The registered Celery name of a task."""
    return f"batchyard.{short}"


def task_queue(settings: Settings, short: str) -> str:
    """The queue a task is routed to."""
    return f"{settings.pipeline.queue}.{_BY_SHORT[short].queue}"


def all_queues(settings: Settings) -> list[str]:
    """Every queue a worker of this deployment consumes."""
    return sorted({task_queue(settings, spec.short) for spec in TASKS})


def task_routes(settings: Settings) -> dict[str, dict[str, str]]:
    """Celery's ``task_routes`` for the whole table."""
    return {spec.name: {"queue": task_queue(settings, spec.short)} for spec in TASKS}


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Celery's ``beat_schedule``: one entry per beat-driven task, keyed by its name."""
    schedule: dict[str, dict[str, Any]] = {}
    for spec in TASKS:
        if spec.every is None:
            continue
        every = max(0.05, spec.every(settings))
        schedule[spec.name] = {
            "task": spec.name, "schedule": timedelta(seconds=every),
            # A tick nobody ran in time is worthless: the next one does the same work.
            "options": {"expires": max(1.0, every * 2), "queue": task_queue(settings, spec.short)},
        }
    return schedule
