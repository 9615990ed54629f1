"""Nudges: Celery messages that say "look at this object", sent by task name.

Services must not import the worker package (it sits above them), so a nudge is sent with
``send_task`` by name through a small producer-only Celery app on the same broker and
queues as the workers (:func:`task_queue` is the one routing table both sides use).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from celery import Celery
from kombu.transport.sqlalchemy import Transport

from batchyard.config import Settings

logger = logging.getLogger(__name__)

#: Which queue (suffix) each task runs on: batch-level work, part-level I/O, beat ticks.
TASK_QUEUES = {
    "prepare": "batches", "finalize": "batches", "cancel": "batches",
    "submit": "parts", "ingest": "parts",
    "tick": "tick",
}


def task_name(short: str) -> str:
    """The registered Celery name of a pipeline task."""
    return f"batchyard.{short}"


def task_queue(settings: Settings, short: str) -> str:
    """The queue a pipeline task is routed to."""
    return f"{settings.pipeline.queue}.{TASK_QUEUES[short]}"


def all_queues(settings: Settings) -> list[str]:
    """Every queue a worker of this deployment consumes."""
    return sorted({task_queue(settings, short) for short in TASK_QUEUES})


def broker_options(settings: Settings) -> dict[str, object]:
    """Transport options shared by producers and workers."""
    if settings.effective_broker_url.startswith("sqla+"):
        return {}  # kombu's SQLAlchemy transport hands every option to create_engine
    return {"visibility_timeout": 3600}


def broker_connection(settings: Settings) -> tuple[str, type[Transport] | None]:
    """The broker URL to give Celery, and the transport class to force (embedded only).

    kombu's SQLAlchemy transport polls its queues once a second and takes no option to
    change that; the embedded broker uses a subclass that polls faster (a quarter tick,
    0.05-0.5 s). Naming a transport class works only with the ``sqla+`` prefix removed.
    """
    url = settings.effective_broker_url
    if not url.startswith("sqla+"):
        return url, None
    interval = min(0.5, max(0.05, settings.pipeline.tick_seconds / 4))
    transport = type("EmbeddedSqlaTransport", (Transport,), {"polling_interval": interval})
    return url.removeprefix("sqla+"), transport


def configure_broker(app: Celery, settings: Settings) -> None:
    """Point a Celery app at the broker of ``settings`` (URL, transport, options)."""
    url, transport = broker_connection(settings)
    app.conf.broker_url = url
    if transport is not None:
        app.conf.broker_transport = transport
    app.conf.broker_transport_options = broker_options(settings)
    app.conf.broker_connection_retry_on_startup = True


def celery_nudger(settings: Settings) -> Callable[[str, str], None]:
    """A nudge function that sends ``batchyard.<task>(object_id)`` to the right queue."""
    state: dict[str, Celery] = {}
    lock = threading.Lock()

    def producer() -> Celery:
        with lock:
            if "app" not in state:
                app = Celery("batchyard-producer")
                configure_broker(app, settings)
                state["app"] = app
            return state["app"]

    def nudge(task: str, object_id: str) -> None:
        producer().send_task(task_name(task), args=[object_id],
                             queue=task_queue(settings, task))
        logger.debug("nudge.sent", extra={"task": task, "object_id": object_id})

    return nudge
