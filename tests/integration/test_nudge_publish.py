"""Nudges as the workers receive them: the embedded SQLite broker and Redis."""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery.contrib.testing.worker import start_worker

from batchyard.broker.nudge import BackgroundNudger, RedisNudger, SqliteNudger, celery_nudger
from batchyard.broker.tasks import task_name, task_queue
from batchyard.config import PipelineSettings, Settings
from batchyard.worker.app import create_celery


def task_of(message: dict[str, Any]) -> tuple[str, list[str]]:
    args = json.loads(base64.b64decode(message["body"]))[0]
    return message["headers"]["task"], args


def test_embedded_nudges_land_in_a_wal_mode_broker_in_order(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    nudge = celery_nudger(settings)
    for batch_id in ("batch_1", "batch_2", "batch_3"):
        nudge("prepare", batch_id)
    nudge("submit", "part_1")

    with sqlite3.connect(tmp_path / "broker.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = conn.execute("SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q "
                            "ON q.id = m.queue_id ORDER BY m.id").fetchall()
    sent = [(queue, *task_of(json.loads(payload))) for queue, payload in rows]
    assert sent == [
        (task_queue(settings, "prepare"), "batchyard.prepare", ["batch_1"]),
        (task_queue(settings, "prepare"), "batchyard.prepare", ["batch_2"]),
        (task_queue(settings, "prepare"), "batchyard.prepare", ["batch_3"]),
        (task_queue(settings, "submit"), "batchyard.submit", ["part_1"]),
    ]


def test_redis_nudges_land_on_their_queues(redis_url: str, unique_name: str) -> None:
    settings = Settings(broker_url=redis_url, pipeline=PipelineSettings(queue=unique_name))
    nudge = celery_nudger(settings)
    for batch_id in ("batch_1", "batch_2"):
        nudge("prepare", batch_id)
    nudge("ingest", "part_1")

    client = redis.Redis.from_url(redis_url)
    try:
        prepare = [task_of(json.loads(raw)) for raw in
                   reversed(client.lrange(task_queue(settings, "prepare"), 0, -1))]
        parts = [task_of(json.loads(raw)) for raw in
                 client.lrange(task_queue(settings, "ingest"), 0, -1)]
    finally:
        for key in client.scan_iter(f"{unique_name}*"):
            client.delete(key)
    assert prepare == [("batchyard.prepare", ["batch_1"]), ("batchyard.prepare", ["batch_2"])]
    assert parts == [("batchyard.ingest", ["part_1"])]


def test_background_nudges_are_all_on_redis_after_close(redis_url: str,
                                                        unique_name: str) -> None:
    settings = Settings(broker_url=redis_url, pipeline=PipelineSettings(queue=unique_name))
    send = celery_nudger(settings)

    def send_or_fail(task: str, object_id: str) -> None:
        if object_id == "batch_bad":
            raise ConnectionError("broker unreachable")  # lost; the sweep re-sends it
        send(task, object_id)

    nudge = BackgroundNudger(send_or_fail)
    for batch_id in ("batch_1", "batch_bad", "batch_2", "batch_3"):
        nudge("prepare", batch_id)
    nudge.close()

    client = redis.Redis.from_url(redis_url)
    try:
        prepare = [task_of(json.loads(raw))[1][0] for raw in
                   reversed(client.lrange(task_queue(settings, "prepare"), 0, -1))]
    finally:
        for key in client.scan_iter(f"{unique_name}*"):
            client.delete(key)
    assert prepare == ["batch_1", "batch_2", "batch_3"]


def _drop_ids(message: dict[str, Any]) -> dict[str, Any]:
    """A message without its per-send values (ids, origin), for comparing shapes."""
    headers = {k: v for k, v in message["headers"].items()
               if k not in ("id", "root_id", "origin")}
    properties = {k: v for k, v in message["properties"].items()
                  if k not in ("correlation_id", "reply_to", "delivery_tag", "argsrepr",
                               "kwargsrepr")}
    return {**message, "headers": headers, "properties": properties}


def test_raw_redis_nudges_have_the_shape_kombu_gives_them(redis_url: str,
                                                         unique_name: str) -> None:
    settings = Settings(broker_url=redis_url, pipeline=PipelineSettings(queue=unique_name))
    celery_nudger(settings)("prepare", "batch_k")
    raw_nudger = RedisNudger(settings)
    raw_nudger.send_many([("prepare", "batch_r"), ("ingest", "part_r")])
    raw_nudger("prepare", "batch_s")

    client = redis.Redis.from_url(redis_url)
    try:
        prepare = [json.loads(raw) for raw in
                   reversed(client.lrange(task_queue(settings, "prepare"), 0, -1))]
        ingest = [json.loads(raw) for raw in client.lrange(task_queue(settings, "ingest"), 0, -1)]
    finally:
        raw_nudger.close()
        for key in client.scan_iter(f"{unique_name}*"):
            client.delete(key)
    assert [task_of(m) for m in prepare] == [("batchyard.prepare", ["batch_k"]),
                                             ("batchyard.prepare", ["batch_r"]),
                                             ("batchyard.prepare", ["batch_s"])]
    assert [task_of(m) for m in ingest] == [("batchyard.ingest", ["part_r"])]
    kombu_made, ours = _drop_ids(prepare[0]), _drop_ids(prepare[1])
    assert ours["headers"]["argsrepr"] == "['batch_r']"
    assert {**ours, "body": None} == {**kombu_made, "body": None,
                                      "headers": {**kombu_made["headers"],
                                                  "argsrepr": "['batch_r']"}}
    assert len({m["properties"]["delivery_tag"] for m in prepare}) == 3


def _recorder(short: str, ran: list[tuple[str, str]]) -> Callable[..., None]:
    def record(self: Any, object_id: str) -> None:
        ran.append((short, object_id))

    return record


def test_a_real_worker_runs_raw_redis_nudges_and_acks_them(redis_url: str,
                                                          unique_name: str,
                                                          tmp_path: Path) -> None:
    """The worker's own app (its configuration: late acks, routes) consumes the raw LPUSH."""
    settings = Settings(broker_url=redis_url, data_dir=tmp_path,
                        pipeline=PipelineSettings(queue=unique_name))
    app = create_celery(settings)
    ran: list[tuple[str, str]] = []
    for short in ("prepare", "ingest"):
        # The step's body is replaced by a recorder: the message format is under test here.
        app.tasks.unregister(task_name(short))
        app.task(name=task_name(short), bind=True, acks_late=True, shared=False)(
            _recorder(short, ran))
    nudger = BackgroundNudger(RedisNudger(settings))
    client = redis.Redis.from_url(redis_url)
    queues = [task_queue(settings, "prepare"), task_queue(settings, "ingest")]
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, queues=queues,
                          shutdown_timeout=10):
            for n in range(5):
                nudger("prepare", f"batch_{n}")
            nudger("ingest", "part_1")
            nudger.close()
            deadline = time.monotonic() + 30
            while len(ran) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
        left = [client.llen(q) for q in queues]
        # kombu keeps a late-acked message in the shared "unacked" hash until its ack.
        unacked = [raw for raw in client.hvals("unacked") if unique_name.encode() in raw]
    finally:
        for key in client.scan_iter(f"{unique_name}*"):
            client.delete(key)
    assert sorted(ran) == sorted([("prepare", f"batch_{n}") for n in range(5)]
                                 + [("ingest", "part_1")])
    assert left == [0, 0]
    assert unacked == []


def test_a_real_worker_runs_raw_embedded_nudges(tmp_path: Path) -> None:
    """The embedded broker: the first nudge goes through kombu (tables, queue row), the rest
    are raw rows, all in kombu's shape, and the worker's own app consumes every one."""
    settings = Settings(data_dir=tmp_path)
    app = create_celery(settings)
    ran: list[tuple[str, str]] = []
    for short in ("prepare", "ingest"):
        app.tasks.unregister(task_name(short))
        app.task(name=task_name(short), bind=True, acks_late=True, shared=False)(
            _recorder(short, ran))
    raw_nudger = SqliteNudger(settings)
    raw_nudger("prepare", "batch_0")  # no broker tables yet: kombu creates them
    raw_nudger.send_many([("prepare", f"batch_{n}") for n in range(1, 5)])
    raw_nudger("ingest", "part_1")
    with sqlite3.connect(tmp_path / "broker.db") as conn:
        rows = conn.execute("SELECT q.name, m.payload, m.visible, m.version FROM kombu_message m"
                            " JOIN kombu_queue q ON q.id = m.queue_id ORDER BY m.id").fetchall()
    assert [(q, *task_of(json.loads(p)), v, ver) for q, p, v, ver in rows] == [
        *((task_queue(settings, "prepare"), "batchyard.prepare", [f"batch_{n}"], 1, 1)
          for n in range(5)),
        (task_queue(settings, "ingest"), "batchyard.ingest", ["part_1"], 1, 1)]
    kombu_made, ours = (_drop_ids(json.loads(rows[i][1])) for i in (0, 1))
    assert {**ours, "body": None, "headers": {**ours["headers"], "argsrepr": None}} == {
        **kombu_made, "body": None, "headers": {**kombu_made["headers"], "argsrepr": None}}

    queues = [task_queue(settings, "prepare"), task_queue(settings, "ingest")]
    with start_worker(app, pool="solo", perform_ping_check=False, queues=queues,
                      shutdown_timeout=10):
        deadline = time.monotonic() + 30
        while len(ran) < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
    raw_nudger.close()
    assert sorted(ran) == sorted([("prepare", f"batch_{n}") for n in range(5)]
                                 + [("ingest", "part_1")])
    with sqlite3.connect(tmp_path / "broker.db") as conn:
        left = conn.execute("SELECT count(*) FROM kombu_message WHERE visible").fetchone()[0]
    assert left == 0
