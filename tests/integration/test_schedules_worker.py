"""The schedule/webhook Celery tasks run in a real worker thread over real Redis."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa
from celery import Celery
from celery.contrib.testing.worker import start_worker

from batchyard.broker.tasks import task_queue
from batchyard.config import PipelineSettings
from batchyard.services import files, schedules
from batchyard.services.container import Services, build_services
from batchyard.services.schedules import ScheduleSpec
from batchyard.worker.app import create_celery
from batchyard.worker.schedule_tasks import (
    SCHEDULER_TICK,
    WEBHOOK_DELIVER,
    register_schedule_tasks,
)
from tests.e2e.helpers import Nudges
from tests.integration.test_schedules_fixtures import (
    Receiver,
    clean_schedule_tables,
    sched_db_url,
    schedule_settings,
)

__all__ = ["sched_db_url"]

pytestmark = [pytest.mark.postgres, pytest.mark.redis]
T = TypeVar("T")


@pytest.fixture()
def svc(sched_db_url: str, redis_url: str, unique_name: str,
        tmp_path: Path) -> Iterator[Services]:
    clean_schedule_tables(sched_db_url)
    settings = schedule_settings(sched_db_url, tmp_path, tick_seconds=0.2).model_copy(
        update={"broker_url": redis_url, "pipeline": PipelineSettings(queue=unique_name)})
    services = build_services(settings, nudge=Nudges())
    try:
        yield services
    finally:
        services.close()


def test_beat_entries_route_both_tasks_to_the_tick_queue(svc: Services) -> None:
    app = create_celery(svc.settings, svc)
    queue = task_queue(svc.settings, "tick")
    for name in (SCHEDULER_TICK, WEBHOOK_DELIVER):
        entry = app.conf.beat_schedule[name]
        assert entry["task"] == name and entry["options"]["queue"] == queue
        assert entry["schedule"].total_seconds() == pytest.approx(0.2)
        assert app.conf.task_routes[name] == {"queue": queue}
        assert name in app.tasks


def test_a_worker_fires_a_due_schedule_and_delivers_its_webhook(svc: Services) -> None:
    app = Celery("batchyard-sched-test", broker=svc.settings.effective_broker_url)
    app.conf.broker_connection_retry_on_startup = True
    register_schedule_tasks(app, lambda: svc)
    queue = task_queue(svc.settings, "tick")
    line = (b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions",'
            b'"body":{"model":"m","messages":[]}}\n')
    file_id = files.create_file(svc, owner=None, filename="a.jsonl", purpose="batch",
                                stream=io.BytesIO(line)).id
    with Receiver([200]) as receiver:
        sched = schedules.create_schedule(
            svc, ScheduleSpec.model_validate({"cron": "* * * * *",
                                              "source": {"kind": "file", "file_id": file_id},
                                              "webhook_url": receiver.url}),
            owner=None, now=time.time() - 120)  # its first slot is already due
        with start_worker(app, pool="solo", perform_ping_check=False, queues=[queue],
                          shutdown_timeout=10):
            app.send_task(SCHEDULER_TICK, queue=queue)
            runs = _wait_for(lambda: [r for r in schedules.list_runs(svc, sched.id, owner=None)
                                      if r.status != "started"])
            assert runs[0].status == "submitted" and runs[0].batch_id
            with svc.engine.begin() as conn:  # play the pipeline: the batch ends
                conn.execute(sa.text("UPDATE batches SET status='completed', completed_at=1 "
                                     "WHERE id=:id"), {"id": runs[0].batch_id})
            app.send_task(SCHEDULER_TICK, queue=queue)  # notes the end, queues the event
            _wait_for(lambda: schedules.list_runs(svc, sched.id, owner=None)[0].batch_status)
            app.send_task(WEBHOOK_DELIVER, queue=queue)
            _wait_for(lambda: receiver.requests)
    assert json.loads(receiver.requests[0].body)["data"]["id"] == runs[0].batch_id


def _wait_for(probe: Callable[[], T], timeout: float = 20.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("the worker did not do it in time")
