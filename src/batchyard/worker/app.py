"""The Celery app, built from Settings: queues, routes, late acks, beat schedule.

Tasks are thin: each builds nothing itself, it calls the pipeline step for one id on the
process-wide :class:`~batchyard.services.container.Services` created at worker start-up.
Reliability settings: ``acks_late`` (a task killed mid-way is redelivered),
``task_acks_on_failure_or_timeout=False`` and ``task_reject_on_worker_lost`` (a crash does not
count as done), prefetch 1 (a slow task does not hold others hostage). Lost messages are the
sweep's job; the database stays the truth.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import Celery, Task

from batchyard.config import Settings
from batchyard.services.container import Services, build_services
from batchyard.services.nudge import (
    TASK_QUEUES,
    all_queues,
    configure_broker,
    task_name,
    task_queue,
)
from batchyard.services.pipeline import run_task, run_tick
from batchyard.worker.schedule_tasks import register_schedule_tasks

logger = logging.getLogger(__name__)


def create_celery(settings: Settings, services: Services | None = None) -> Celery:
    """A Celery app for ``settings``; the services are built lazily in the worker process."""
    # The embedded broker and the beat schedule file live there.
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("batchyard")
    app.conf.update(_conf(settings))
    configure_broker(app, settings)
    holder: dict[str, Services] = {"svc": services} if services is not None else {}

    def svc() -> Services:
        if "svc" not in holder:
            holder["svc"] = build_services(settings)
        return holder["svc"]

    app.batchyard_services = svc
    _register(app, svc)
    register_schedule_tasks(app, svc, settings)  # issue 5: schedule tick + webhook beat tasks
    return app


def _conf(settings: Settings) -> dict[str, Any]:
    tick = max(0.05, settings.pipeline.tick_seconds)
    return {
        "task_acks_late": True,
        "task_acks_on_failure_or_timeout": False,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_default_queue": task_queue(settings, "tick"),
        "task_routes": {task_name(short): {"queue": task_queue(settings, short)}
                        for short in TASK_QUEUES},
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_max_loop_interval": tick,
        "beat_schedule": {
            "batchyard-tick": {
                "task": task_name("tick"),
                "schedule": timedelta(seconds=tick),
                # A tick nobody ran in time is worthless: the next one does the same work.
                "options": {"expires": max(1.0, tick * 2),
                            "queue": task_queue(settings, "tick")},
            },
        },
        "beat_schedule_filename": str(settings.data_dir / f"beat-{settings.pipeline.queue}"),
    }


def _register(app: Celery, svc: Any) -> None:
    for short in TASK_QUEUES:
        if short == "tick":
            continue
        _step_task(app, svc, short)

    @app.task(name=task_name("tick"), bind=True, acks_late=False)
    def tick(self: Task) -> int:  # ticks are fire-and-forget; losing one loses nothing
        return run_tick(svc())


def _step_task(app: Celery, svc: Any, short: str) -> None:
    def step(self: Task, object_id: str) -> None:
        run_task(svc(), short, object_id)

    app.task(name=task_name(short), bind=True)(step)


def worker_queues(settings: Settings) -> list[str]:
    """The queues a worker consumes."""
    return all_queues(settings)
