"""The pipeline's task table: one entry per nudge name, shared by the Celery worker and tests.

Every entry takes ``(services, object_id)``, re-reads the database and does nothing when the
state has moved on, so running one twice (a redelivered or swept nudge) is harmless.
"""

from __future__ import annotations

from collections.abc import Callable

from batchyard.services.cancel import cancel_batch_work
from batchyard.services.container import Services
from batchyard.services.failures import give_up_on
from batchyard.services.finalize import finalize_batch
from batchyard.services.ingest import ingest_part
from batchyard.services.poll import poll_due_parts
from batchyard.services.prepare import prepare_batch
from batchyard.services.submit import submit_part
from batchyard.services.sweep import tick

TASKS: dict[str, Callable[[Services, str], object]] = {
    "prepare": prepare_batch,
    "submit": submit_part,
    "poll": poll_due_parts,
    "ingest": ingest_part,
    "finalize": finalize_batch,
    "cancel": cancel_batch_work,
}


def run_task(svc: Services, name: str, object_id: str) -> object:
    """Run the pipeline step ``name`` for ``object_id``.

    An unexpected error is raised again (the sweep retries the step) until the same one has
    happened ``max_task_failures`` times: then the batch or part ends ``failed`` and the
    task is done (:mod:`batchyard.services.failures`).
    """
    try:
        return TASKS[name](svc, object_id)
    except Exception as exc:
        if give_up_on(svc, name, object_id, exc):
            return None
        raise


def run_tick(svc: Services) -> int:
    """One beat tick (nudge polls of due parts, sweep lost nudges)."""
    return tick(svc)
