"""Webhooks for batches that really ran: the pipeline (inline) against the emulator on a port.

A scheduled run and a plain batch with ``metadata.webhook_url`` go through the real pipeline;
the scheduler tick notices the end (no hook in the pipeline needed) and the receiver gets the
signed event with the batch's real counts and usage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from batchyard.config import ScheduleSettings
from batchyard.db import migrate
from batchyard.domain.webhooks import SIGNATURE_HEADER, verify_signature
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services import batches, notifications, schedules
from batchyard.services.schedule_sources import SourceContext
from batchyard.services.schedules import ScheduleSpec
from tests.e2e.helpers import InlineDriver, fast_settings, jsonl, request_line, upload
from tests.integration.test_schedules_fixtures import Receiver

GLOBAL_SECRET = "whsec_global"


def three_questions(ctx: SourceContext) -> list[dict[str, Any]]:
    """The scheduled source: three chat requests for the fire date."""
    return [{"custom_id": f"q{i}", "body": {"model": "gpt-4o-mini", "messages": [
        {"role": "user", "content": f"{ctx.date} question {i}"}]}} for i in range(3)]


@pytest.fixture()
def driver(tmp_path: Path) -> Iterator[InlineDriver]:
    cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, cancel_grace=0.0)
    with EmulatorServer(cfg) as emulator:
        settings = fast_settings(tmp_path, emulator_url=emulator.base_url).model_copy(update={
            "schedules": ScheduleSettings(webhook_secret=GLOBAL_SECRET,
                                          webhook_backoff_initial=0.01,
                                          webhook_backoff_max=0.05,
                                          webhook_allow=["127.0.0.1"])})
        migrate.upgrade(settings.effective_database_url)
        inline = InlineDriver(settings)
        try:
            yield inline
        finally:
            inline.svc.close()


def _status(driver: InlineDriver, batch_id: str) -> str:
    return str(batches.get_batch(driver.svc, batch_id, owner=None).status)


def _deliver_until(driver: InlineDriver, receiver: Receiver, count: int) -> None:
    deadline = time.monotonic() + 20
    while len(receiver.requests) < count:
        assert time.monotonic() < deadline, "no webhook arrived in time"
        schedules.tick(driver.svc)
        notifications.deliver_due(driver.svc)
        time.sleep(0.02)


def test_a_scheduled_run_that_completes_is_announced_with_real_counts(
        driver: InlineDriver) -> None:
    svc = driver.svc
    with Receiver([200]) as receiver:
        spec = ScheduleSpec.model_validate({
            "cron": "0 * * * *", "model": "gpt-4o-mini",
            "source": {"kind": "callable",
                       "target": "tests.integration.test_webhooks_pipeline:three_questions"},
            "webhook_url": receiver.url, "webhook_secret": "whsec_schedule"})
        sched = schedules.create_schedule(svc, spec, owner=None, now=time.time() - 3600)
        (run,) = schedules.tick(svc).runs
        assert run.status == "submitted" and run.batch_id is not None
        driver.run_until(lambda: _status(driver, run.batch_id or "") == "completed")
        _deliver_until(driver, receiver, 1)
    got = receiver.requests[0]
    assert verify_signature("whsec_schedule", got.headers[SIGNATURE_HEADER], got.body,
                            now=time.time())
    event = json.loads(got.body)
    assert event["type"] == "batch.completed" and event["data"]["id"] == run.batch_id
    assert event["data"]["request_counts"] == {"total": 3, "completed": 3, "failed": 0}
    assert event["data"]["usage"]["input_tokens"] > 0
    (latest,) = schedules.list_runs(svc, sched.id, owner=None)
    assert latest.batch_status == "completed"


def test_a_plain_batch_naming_a_webhook_in_metadata_is_announced_when_it_fails(
        driver: InlineDriver) -> None:
    svc = driver.svc
    with Receiver([500, 200]) as receiver:
        bad = jsonl([request_line("a")]) + b"{not json\n"
        batch = batches.create_batch(svc, owner=None, input_file_id=upload(svc, bad),
                                     endpoint="/v1/chat/completions",
                                     metadata={"webhook_url": receiver.url})
        driver.run_until(lambda: _status(driver, batch.id) == "failed")
        _deliver_until(driver, receiver, 2)
    assert all(verify_signature(GLOBAL_SECRET, r.headers[SIGNATURE_HEADER], r.body,
                                now=time.time()) for r in receiver.requests)
    event = json.loads(receiver.requests[-1].body)
    assert (event["type"], event["data"]["status"]) == ("batch.failed", "failed")
    attempts = notifications.list_deliveries(svc, batch_id=batch.id)
    assert [(a.attempt, a.status, a.response_status) for a in attempts] == [
        (1, "failed", 500), (2, "delivered", 200)]


def test_a_cancelled_batch_is_announced_once(driver: InlineDriver) -> None:
    svc = driver.svc
    with Receiver([200]) as receiver:
        batch = batches.create_batch(svc, owner=None,
                                     input_file_id=upload(svc, jsonl([request_line("a")])),
                                     endpoint="/v1/chat/completions",
                                     metadata={"webhook_url": receiver.url})
        batches.cancel_batch(svc, batch.id, owner=None)
        driver.run_until(lambda: _status(driver, batch.id) == "cancelled")
        _deliver_until(driver, receiver, 1)
        for _ in range(3):  # more ticks announce nothing new
            schedules.tick(svc)
            notifications.deliver_due(svc)
    assert len(receiver.requests) == 1
    assert json.loads(receiver.requests[0].body)["type"] == "batch.cancelled"
