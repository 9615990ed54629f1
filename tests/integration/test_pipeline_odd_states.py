"""Provider odd states and idempotent ingest, through the pipeline services (no Celery)
against the emulator on a real port, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services.ingest import ingest_part
from tests.e2e.helpers import (
    InlineDriver,
    fast_settings,
    fresh_pg_database,
    jsonl,
    request_line,
    results_by_custom_id,
    upload,
    wait_for,
)

TERMINAL = ("completed", "failed", "cancelled", "expired")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def driver(request: pytest.FixtureRequest, tmp_path: Path,
           emulator: EmulatorServer) -> Iterator[InlineDriver]:
    with _database(request, tmp_path) as url:
        settings = fast_settings(tmp_path, emulator_url=emulator.base_url, database_url=url)
        migrate.upgrade(settings.effective_database_url)
        inline = InlineDriver(settings)
        yield inline
        inline.svc.close()


def _database(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    import contextlib

    if request.param == "sqlite":
        return contextlib.nullcontext(None)
    return fresh_pg_database(request.getfixturevalue("postgres_url"))


def _run(driver: InlineDriver, n: int, *statuses: str) -> Any:
    lines = [request_line(f"q{i}", f"question {i}") for i in range(n)]
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    return driver.run_until(lambda: (b := batch_service.get_batch(
        driver.svc, batch.id, owner=None)).status in statuses and b)


def _scalar(driver: InlineDriver, sql: str, **params: Any) -> Any:
    with driver.svc.engine.connect() as conn:
        return conn.scalar(sa.text(sql), params)


def test_completed_without_an_output_file_retries_the_requests(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(no_output_file_next=1)
    final = _run(driver, 3, "completed", "failed")
    results = results_by_custom_id(driver.svc.engine, final.id)
    assert final.status == "completed"
    assert all(rows[0]["ok"] and rows[0]["attempt"] == 2 for rows in results.values())
    assert len(results) == 3


def test_a_404_just_after_create_is_treated_as_transient(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(not_found_after_create=2)
    final = _run(driver, 3, "completed", "failed")
    assert final.status == "completed"
    assert final.request_counts.completed == 3


def test_provider_validation_failure_fails_the_batch_with_the_providers_errors(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(fail_validation_next=5, fail_validation_code="invalid_request")
    final = _run(driver, 3, "completed", "failed")
    assert final.status == "failed"
    assert final.errors is not None
    assert final.errors.data[0].code == "invalid_request"


def test_token_limit_exceeded_waits_and_resubmits_instead_of_failing(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(enqueued_token_quota=1)
    lines = [request_line(f"t{i}", "a long enough question " * 5) for i in range(3)]
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    driver.run_until(lambda: _scalar(driver, "SELECT count(*) FROM parts WHERE status = "
                                             "'requeued'"))
    assert _scalar(driver, "SELECT max(blocked_until) FROM deployment_state") is not None
    emulator.emulator.set_faults(enqueued_token_quota=None)
    final = driver.run_until(lambda: (b := batch_service.get_batch(
        driver.svc, batch.id, owner=None)).status in ("completed", "failed") and b)
    assert final.status == "completed"
    results = results_by_custom_id(driver.svc.engine, batch.id)
    assert all(rows[0]["ok"] and rows[0]["attempt"] == 1 for rows in results.values())


def test_ingesting_the_same_output_twice_changes_nothing(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    final = _run(driver, 6, "completed")
    before = results_by_custom_id(driver.svc.engine, final.id)
    with driver.svc.engine.begin() as conn:
        part_ids = list(conn.scalars(sa.text("UPDATE parts SET status = 'ingesting', "
                                             "next_poll_at = 0 RETURNING id")))
    for part_id in part_ids:
        ingest_part(driver.svc, part_id)
    assert results_by_custom_id(driver.svc.engine, final.id) == before
    assert _scalar(driver, "SELECT count(*) FROM results") == 6
    assert _scalar(driver, "SELECT count(*) FROM parts WHERE status = 'ingested'") == 2


def test_the_sweep_renudges_work_whose_messages_were_lost(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"l{i}") for i in range(5)]
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    driver.queue.clear()  # the broker was flushed: the prepare nudge is gone
    driver.run_until(lambda: _scalar(driver, "SELECT count(*) FROM parts") == 2)
    driver.queue.clear()  # and again: both submit nudges are gone
    final = driver.run_until(lambda: (b := batch_service.get_batch(
        driver.svc, batch.id, owner=None)).status == "completed" and b)
    assert final.request_counts.completed == 5
    assert emulator.emulator.stats()["batches_created"] == 2


def test_a_create_whose_answer_was_lost_is_found_not_repeated(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    # The provider creates the batch, then the connection drops before we hear about it.
    emulator.emulator.set_faults(drop_next=1, drop_after_handling=True, fault_path="/batches",
                                 fault_method="POST")
    final = _run(driver, 3, "completed", "failed")
    assert final.status == "completed"
    stats = emulator.emulator.stats()
    assert stats["batches_created"] == 1


def test_an_upload_whose_answer_was_lost_is_found_not_repeated(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    emulator.emulator.set_faults(drop_next=1, drop_after_handling=True, fault_path="/files",
                                 fault_method="POST")
    final = _run(driver, 3, "completed", "failed")
    assert final.status == "completed"
    assert emulator.emulator.stats()["files_uploaded"] == 1


def test_cancelling_after_the_provider_finished_keeps_every_result(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    lines = [request_line(f"f{i}") for i in range(3)]
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    driver.run_until(lambda: _scalar(driver, "SELECT count(*) FROM parts WHERE status = "
                                             "'submitted'"))
    # Let the provider finish without polling it, so our cancel reaches a finished batch.
    wait_for(lambda: all(b["status"] == "completed"
                         for b in emulator.emulator.stats()["batches"]), timeout=30)
    assert batch_service.cancel_batch(driver.svc, batch.id, owner=None).status == "cancelling"
    final = driver.run_until(lambda: (b := batch_service.get_batch(
        driver.svc, batch.id, owner=None)).status == "cancelled" and b)
    assert final.request_counts.completed == 3  # nothing was lost by the late cancel
    assert _scalar(driver, "SELECT count(*) FROM events WHERE to_status = 'cancelling' "
                           "AND entity = 'part'") == 1


def test_a_batch_past_its_window_ends_expired_with_its_partial_results(
        tmp_path: Path) -> None:
    cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, completion_window=1.0,
                         request_latency=0.25)
    with EmulatorServer(cfg) as slow:
        driver = InlineDriver(fast_settings(tmp_path, emulator_url=slow.base_url,
                                            part_max_requests=10))
        migrate.upgrade(driver.svc.settings.effective_database_url)
        try:
            lines = [request_line(f"x{i}") for i in range(10)]
            batch = batch_service.create_batch(driver.svc, owner=None,
                                               input_file_id=upload(driver.svc, jsonl(lines)),
                                               endpoint="/v1/chat/completions")
            with driver.svc.engine.begin() as conn:  # our own 24 h window has passed, too
                conn.execute(sa.text("UPDATE batches SET expires_at = 1 WHERE id = :b"),
                             {"b": batch.id})
            final = driver.run_until(lambda: (b := batch_service.get_batch(
                driver.svc, batch.id, owner=None)).status in TERMINAL and b)
            results = results_by_custom_id(driver.svc.engine, batch.id)
        finally:
            driver.svc.close()
    assert final.status == "expired"
    assert len(results) == 10
    codes = {rows[0]["error_code"] for rows in results.values() if not rows[0]["ok"]}
    assert codes == {"batch_expired"}
    assert 0 < final.request_counts.completed < 10
    assert slow.emulator.stats()["batches_created"] == 1  # nothing retried past the window
