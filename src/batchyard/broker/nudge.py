"""Nudges: Celery messages that say "look at this object", sent by task name.

Services must not import the worker package (it sits above them), so a nudge is sent with
``send_task`` by name through a small producer-only Celery app on the same broker and
queues as the workers (both take names and queues from :mod:`batchyard.broker.tasks`).
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
from collections.abc import Callable

from celery import Celery

from batchyard.broker.connection import configure_producer
from batchyard.broker.tasks import task_name, task_queue
from batchyard.config import Settings

logger = logging.getLogger(__name__)

def celery_nudger(settings: Settings) -> Callable[[str, str], None]:
    """A nudge function that sends ``batchyard.<task>(object_id)`` to the right queue."""
    state: dict[str, Celery] = {}
    lock = threading.Lock()

    def producer() -> Celery:
        with lock:
            if "app" not in state:
                app = Celery("batchyard-producer")
                configure_producer(app, settings)
                state["app"] = app
            return state["app"]

    def nudge(task: str, object_id: str) -> None:
        # argsrepr given: Celery would otherwise run its safe-repr machinery on every send.
        producer().send_task(task_name(task), args=[object_id], argsrepr=repr([object_id]),
                             kwargsrepr="{}", queue=task_queue(settings, task))
        logger.debug("nudge.sent", extra={"task": task, "object_id": object_id})

    return nudge


class BackgroundNudger:
    """A nudge function that returns at once; one daemon thread does the sending.

    For the API: a create's response need not wait for the broker publish (a quarter of
    the CPU of a ``POST /v1/batches``). Callers queue a nudge only after committing the row
    it is about, so a nudge still queued when the process dies (or whose publish fails) is
    lost, never the work: the sweep re-sends it. :meth:`close` (also run at exit) sends
    what is queued before returning.
    """

    def __init__(self, send: Callable[[str, str], None], *, flush_seconds: float = 5.0) -> None:
        self._send = send
        self._flush_seconds = flush_seconds
        self._queue: queue.SimpleQueue[tuple[str, str] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __call__(self, task: str, object_id: str) -> None:
        if self._thread is None:
            self._start()
        self._queue.put((task, object_id))

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                # Started on first use, so a process that forks before nudging is unaffected.
                self._thread = threading.Thread(target=self._run, name="batchyard-nudges",
                                                daemon=True)
                self._thread.start()
                atexit.register(self.close)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                self._send(*item)
            except Exception:  # a lost nudge is recovered by the sweep; keep sending others
                logger.warning("nudge.failed", exc_info=True,
                               extra={"task": item[0], "object_id": item[1]})

    def close(self) -> None:
        """Send the queued nudges (waiting at most ``flush_seconds``), then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        atexit.unregister(self.close)
        self._queue.put(None)
        thread.join(self._flush_seconds)
        if thread.is_alive():
            logger.warning("nudge.flush_timeout", extra={"seconds": self._flush_seconds})
