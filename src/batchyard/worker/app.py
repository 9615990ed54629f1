"""The Celery app, built from Settings and the task table in :mod:`batchyard.broker.tasks`.

Tasks are thin: each builds nothing itself, it calls the pipeline step for one id on the
process-wide :class:`~batchyard.services.container.Services` created at worker start-up.
Reliability settings: ``acks_late`` (a task killed mid-way is redelivered),
``task_acks_on_failure_or_timeout=False`` and ``task_reject_on_worker_lost`` (a crash does not
count as done), prefetch 1 (a slow task does not hold others hostage). Lost messages are the
sweep's job; the database stays the truth.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from batchyard.broker.connection import configure_broker
from batchyard.broker.tasks import (
    TASKS,
    TaskSpec,
    all_queues,
    beat_schedule,
    task_queue,
    task_routes,
)
from batchyard.config import Settings
from batchyard.metrics.counters import timed_task
from batchyard.services.container import Services, build_services
from batchyard.services.pipeline import run_task, run_tick
from batchyard.worker.schedule_tasks import BEAT_TASKS

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
            holder["svc"].prices.warm()  # load the price table before the first ingest
        return holder["svc"]

    app.batchyard_services = svc
    register_tasks(app, svc)
    return app


def _conf(settings: Settings) -> dict[str, Any]:
    return {
        "task_acks_late": True,
        "task_acks_on_failure_or_timeout": False,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "task_default_queue": task_queue(settings, "tick"),
        "task_routes": task_routes(settings),
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "beat_max_loop_interval": max(0.05, settings.pipeline.tick_seconds),
        "beat_schedule": beat_schedule(settings),
        "beat_schedule_filename": str(settings.data_dir / f"beat-{settings.pipeline.queue}"),
    }


def register_tasks(app: Celery, svc: Callable[[], Services]) -> None:
    """Register every task of the table on ``app`` (``svc`` returns the worker's Services)."""
    for spec in TASKS:
        if spec.every is None:
            _register_step(app, svc, spec)
        else:
            _register_beat(app, svc, spec,
                           run_tick if spec.short == "tick" else BEAT_TASKS[spec.name])


def _register_step(app: Celery, svc: Callable[[], Services], spec: TaskSpec) -> None:
    def step(self: Task, object_id: str) -> None:
        with timed_task(spec.short):
            run_task(svc(), spec.short, object_id)

    app.task(name=spec.name, bind=True, acks_late=spec.acks_late, shared=False)(step)


def _register_beat(app: Celery, svc: Callable[[], Services], spec: TaskSpec,
                   body: Callable[[Services], int]) -> None:
    def beat(self: Task) -> int:
        with timed_task(spec.short):
            return body(svc())

    app.task(name=spec.name, bind=True, acks_late=spec.acks_late, shared=False)(beat)


def worker_queues(settings: Settings) -> list[str]:
    """The queues a worker consumes."""
    return all_queues(settings)
