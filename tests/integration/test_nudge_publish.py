"""Nudges as the workers receive them: the embedded SQLite broker and Redis."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

import redis

from batchyard.broker.nudge import BackgroundNudger, celery_nudger
from batchyard.broker.tasks import task_queue
from batchyard.config import PipelineSettings, Settings


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
