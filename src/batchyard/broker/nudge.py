"""Nudges: Celery messages that say "look at this object", sent by task name.

Services must not import the worker package (it sits above them), so a nudge is sent by
name to the same broker and queues as the workers (both take names and queues from
:mod:`batchyard.broker.tasks`): on Redis as a ready-made Celery message pushed with one
``LPUSH`` (:class:`RedisNudger`), on the embedded broker with ``send_task`` through a small
producer-only Celery app.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import queue
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import redis
from celery import Celery
from sqlalchemy.engine import make_url

from batchyard.broker.connection import broker_pragmas, configure_producer
from batchyard.broker.tasks import TASK_QUEUES, task_name, task_queue
from batchyard.config import Settings

logger = logging.getLogger(__name__)

#: One nudge: (task short name, object id).
Nudge = tuple[str, str]
#: Sends several nudges at once (a batch drained from the background queue).
SendMany = Callable[[Sequence[Nudge]], None]

#: Celery's "embed" part of a protocol-2 body: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def build_nudger(settings: Settings) -> Callable[[str, str], None]:
    """The cheapest nudge function for the deployment's broker."""
    if RedisNudger.supports(settings):
        return RedisNudger(settings)
    if SqliteNudger.supports(settings):
        return SqliteNudger(settings)
    return celery_nudger(settings)


def celery_message(task: str, object_id: str, queue_name: str, host: str) -> dict[str, Any]:
    """``send_task(batchyard.<task>, args=[object_id], queue=queue_name)`` as kombu stores it:
    Celery task protocol 2, JSON body, base64 body encoding, priority 0, default exchange."""
    task_id = str(uuid.uuid4())
    body = base64.b64encode(orjson.dumps([[object_id], {}, _EMBED])).decode("ascii")
    return {
        "body": body, "content-encoding": "utf-8", "content-type": "application/json",
        "headers": {
            "lang": "py", "task": task_name(task), "id": task_id, "shadow": None,
            "eta": None, "expires": None, "group": None, "group_index": None,
            "retries": 0, "timelimit": [None, None], "root_id": task_id,
            "parent_id": None, "argsrepr": repr([object_id]), "kwargsrepr": "{}",
            "origin": f"gen{os.getpid()}@{host}", "ignore_result": None,
            "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {}},
        "properties": {
            "correlation_id": task_id, "reply_to": str(uuid.uuid4()),
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue_name},
            "priority": 0, "body_encoding": "base64", "delivery_tag": str(uuid.uuid4())},
    }


class RedisNudger:
    """Nudges on a Redis broker without kombu: a pre-built Celery message, one ``LPUSH``.

    The message is what ``send_task(name, args=[object_id], queue=q)`` puts on Redis (Celery
    task protocol 2, JSON body, base64 body encoding; kombu's Redis transport pushes it on
    the list named after the queue, priority 0, default exchange); a real worker consumes it
    (``tests/integration/test_nudge_publish.py``). Building it and pushing it costs a small
    fraction of kombu's publish (producer pool, exchange declaration, routing, message
    object). Several nudges go in one round trip (:meth:`send_many`).
    """

    def __init__(self, settings: Settings) -> None:
        self._client = redis.Redis.from_url(settings.effective_broker_url)
        self._queues = {short: task_queue(settings, short) for short in TASK_QUEUES}
        self._host = socket.gethostname()

    @staticmethod
    def supports(settings: Settings) -> bool:
        """Whether the broker is a plain Redis URL (kombu's options stay at their defaults)."""
        return settings.effective_broker_url.startswith(("redis://", "rediss://"))

    def message(self, task: str, object_id: str) -> tuple[str, bytes]:
        """The queue and the raw message of one nudge, as kombu would have pushed it."""
        queue_name = self._queues[task]
        return queue_name, orjson.dumps(celery_message(task, object_id, queue_name,
                                                       self._host))

    def send_many(self, nudges: Sequence[Nudge]) -> None:
        """Push ``nudges`` in order, in one round trip."""
        if len(nudges) == 1:
            self._client.lpush(*self.message(*nudges[0]))
            return
        pipe = self._client.pipeline(transaction=False)
        for task, object_id in nudges:
            pipe.lpush(*self.message(task, object_id))
        pipe.execute()

    def __call__(self, task: str, object_id: str) -> None:
        self.send_many([(task, object_id)])
        logger.debug("nudge.sent", extra={"task": task, "object_id": object_id})

    def close(self) -> None:
        """Close the pooled connections."""
        self._client.close()

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


class SqliteNudger:
    """Nudges on the embedded broker without kombu: one INSERT per message, one commit per batch.

    The row is the one kombu's SQLAlchemy transport writes (``kombu_message``: the JSON
    message, visible, version 1, the queue's id; see ``broker/connection.py``), through a
    plain sqlite3 connection with the broker's pragmas (WAL, synchronous=NORMAL). A queue
    whose row kombu has not created yet (a fresh broker file) gets its first nudges through
    :func:`celery_nudger`, which creates the tables and the queue row.
    """

    _INSERT = ("INSERT INTO kombu_message (visible, payload, version, queue_id) "
               "VALUES (1, ?, 1, ?)")

    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.effective_broker_url.removeprefix("sqla+"))
        self._path = url.database or ""
        self._queues = {short: task_queue(settings, short) for short in TASK_QUEUES}
        self._host = socket.gethostname()
        self._fallback = celery_nudger(settings)
        self._queue_ids: dict[str, int] = {}
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    @staticmethod
    def supports(settings: Settings) -> bool:
        """Whether the broker is the embedded SQLite file."""
        url = settings.effective_broker_url
        return url.startswith("sqla+sqlite:///") and ":memory:" not in url

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            broker_pragmas(conn, None)
            self._conn = conn
        return self._conn

    def _queue_id(self, conn: sqlite3.Connection, queue_name: str) -> int | None:
        found = self._queue_ids.get(queue_name)
        if found is None:
            try:
                row = conn.execute("SELECT id FROM kombu_queue WHERE name = ?",
                                   (queue_name,)).fetchone()
            except sqlite3.OperationalError:  # no tables yet: kombu creates them
                return None
            if row is not None:
                found = self._queue_ids[queue_name] = int(row[0])
        return found

    def send_many(self, nudges: Sequence[Nudge]) -> None:
        """Insert ``nudges`` in order, in one transaction."""
        with self._lock:
            conn = self._connection()
            rows: list[tuple[str, int]] = []
            for task, object_id in nudges:
                queue_name = self._queues[task]
                queue_id = self._queue_id(conn, queue_name)
                if queue_id is None:
                    self._flush(conn, rows)
                    rows = []
                    self._fallback(task, object_id)
                    continue
                message = celery_message(task, object_id, queue_name, self._host)
                rows.append((orjson.dumps(message).decode(), queue_id))
            self._flush(conn, rows)

    def _flush(self, conn: sqlite3.Connection, rows: list[tuple[str, int]]) -> None:
        if rows:
            with conn:  # BEGIN ... COMMIT (rolled back if an insert fails)
                conn.execute("BEGIN")
                conn.executemany(self._INSERT, rows)

    def __call__(self, task: str, object_id: str) -> None:
        self.send_many([(task, object_id)])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class BackgroundNudger:
    """A nudge function that returns at once; one daemon thread does the sending.

    For the API: a create's response need not wait for the broker publish. Callers queue a
    nudge only after committing the row it is about, so a nudge still queued when the
    process dies (or whose publish fails) is lost, never the work: the sweep re-sends it.
    :meth:`close` (also run at exit) sends what is queued before returning. When ``send``
    has a ``send_many`` (:class:`RedisNudger`, :class:`SqliteNudger`), the thread waits
    ``linger_seconds`` after a nudge arrives and then sends everything queued by then (up to
    ``max_batch``) in one call: under a burst of creates one round trip carries many nudges
    (on Redis a lone ``LPUSH`` cost ~130 us of CPU, one of 16 pipelined ~27 us each), and a
    nudge is only a hint, so a few milliseconds more before a worker sees it cost nothing.
    """

    def __init__(self, send: Callable[[str, str], None], *, flush_seconds: float = 5.0,
                 max_batch: int = 100, linger_seconds: float = 0.005) -> None:
        self._send = send
        self._send_many: SendMany | None = getattr(send, "send_many", None)
        self._linger = linger_seconds if self._send_many is not None else 0.0
        self._max_batch = max_batch
        self._flush_seconds = flush_seconds
        self._queue: queue.SimpleQueue[Nudge | None] = queue.SimpleQueue()
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
        running = True
        while running:
            item = self._queue.get()
            if item is None:
                return
            if self._linger > 0:
                time.sleep(self._linger)  # let the nudges of a burst gather
            batch = [item]
            while len(batch) < self._max_batch:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    running = False
                    break
                batch.append(more)
            self._deliver(batch)

    def _deliver(self, batch: list[Nudge]) -> None:
        if self._send_many is not None:
            try:
                self._send_many(batch)
            except Exception:  # lost nudges are recovered by the sweep; keep sending others
                logger.warning("nudge.failed", exc_info=True, extra={
                    "task": batch[0][0], "object_id": batch[0][1], "count": len(batch)})
            return
        for task, object_id in batch:
            try:
                self._send(task, object_id)
            except Exception:  # a lost nudge is recovered by the sweep; keep sending others
                logger.warning("nudge.failed", exc_info=True,
                               extra={"task": task, "object_id": object_id})

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
