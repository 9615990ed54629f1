"""The pipeline through a REAL Celery worker process on Redis + PostgreSQL, and on the
embedded default (SQLite + the embedded broker), against the emulator on a real port."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services import files as file_service
from batchyard.services.container import Services
from tests.e2e.helpers import jsonl, request_line, results_by_custom_id, upload, wait_for

pytestmark = pytest.mark.slow


def _submit(svc: Services, lines: list[dict[str, Any]]) -> str:
    batch = batch_service.create_batch(svc, owner=None, input_file_id=upload(svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    return batch.id


def _wait_status(svc: Services, batch_id: str, *statuses: str, timeout: float = 60.0) -> Any:
    return wait_for(lambda: (b := batch_service.get_batch(svc, batch_id, owner=None)).status
                    in statuses and b, timeout=timeout, message=f"batch {statuses}")


def _assert_one_upload_and_batch_per_part(emulator: EmulatorServer) -> int:
    stats = emulator.emulator.stats()
    uploads = Counter(f["filename"] for f in stats["files"] if f["purpose"] == "batch")
    batches = Counter((b["metadata"] or {}).get("batchyard_part_id") for b in stats["batches"])
    assert uploads and all(n == 1 for n in uploads.values()), uploads
    assert batches and all(n == 1 for n in batches.values()), batches
    assert set(batches) == {name.removesuffix(".jsonl") for name in uploads}
    return len(batches)


@pytest.mark.postgres
@pytest.mark.redis
def test_happy_path_on_redis_and_postgres_splits_into_parts_with_one_result_each(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory()
    _, workers, svc = pipeline_env(emulator, database_url=pg_database,
                                          broker_url=redis_url)
    workers.start()
    lines = [request_line(f"r{i}", f"question number {i}") for i in range(11)]
    batch_id = _submit(svc, lines)
    final = _wait_status(svc, batch_id, "completed", "failed")
    assert final.status == "completed"
    results = results_by_custom_id(svc.engine, batch_id)
    assert sorted(results) == sorted(f"r{i}" for i in range(11))
    for i in range(11):
        (row,) = results[f"r{i}"]
        assert row["ok"] and f"question number {i}" in row["response_body"]
    assert _assert_one_upload_and_batch_per_part(emulator) == 3
    assert workers.task_errors() == []


@pytest.mark.postgres
@pytest.mark.redis
def test_failed_requests_are_retried_to_success_and_4xx_are_kept(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory()
    _, workers, svc = pipeline_env(emulator, database_url=pg_database,
                                          broker_url=redis_url)
    workers.start()
    lines = [request_line("ok-1"), request_line("flaky", x_emulator={"status": 500, "times": 1}),
             request_line("limited", x_emulator={"status": 429, "times": 2}),
             request_line("bad", x_emulator={"status": 400})]
    batch_id = _submit(svc, lines)
    final = _wait_status(svc, batch_id, "completed", "failed")
    results = results_by_custom_id(svc.engine, batch_id)
    assert {cid: (rows[0]["ok"], rows[0]["attempt"]) for cid, rows in results.items()} == {
        "ok-1": (True, 1), "flaky": (True, 2), "limited": (True, 3), "bad": (False, 1)}
    assert results["bad"][0]["status_code"] == 400
    assert (final.request_counts.completed, final.request_counts.failed) == (3, 1)
    assert workers.task_errors() == []


@pytest.mark.postgres
@pytest.mark.redis
def test_cancel_mid_run_keeps_partial_results_and_ends_cancelled(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory(request_latency=1.0)
    _, workers, svc = pipeline_env(emulator, database_url=pg_database,
                                          broker_url=redis_url, part_max_requests=3)
    workers.start()
    batch_id = _submit(svc, [request_line(f"c{i}") for i in range(9)])
    wait_for(lambda: any(b["status"] == "in_progress"
                         for b in emulator.emulator.stats()["batches"]), timeout=30,
             message="a provider batch in progress")
    batch_service.cancel_batch(svc, batch_id, owner=None)
    final = _wait_status(svc, batch_id, "cancelled")
    results = results_by_custom_id(svc.engine, batch_id)
    assert sorted(results) == sorted(f"c{i}" for i in range(9))
    assert all(len(rows) == 1 for rows in results.values())
    cancelled = [cid for cid, rows in results.items() if rows[0]["error_code"] ==
                 "batch_cancelled"]
    assert cancelled, "some requests were stopped by the cancel"
    assert final.request_counts.total == 9
    assert final.error_file_id is not None
    errors = b"".join(file_service.iter_file_content(svc, final.error_file_id, owner=None))
    assert errors.count(b"batch_cancelled") == len(cancelled)
    assert file_service.get_file(svc, final.error_file_id, owner=None).bytes == len(errors)
    assert all(b["status"] in ("cancelled", "completed")
               for b in emulator.emulator.stats()["batches"])


@pytest.mark.postgres
@pytest.mark.redis
def test_expiry_with_partial_output_retries_the_rest(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory(completion_window=1.2, request_latency=0.2)
    _, workers, svc = pipeline_env(emulator, database_url=pg_database,
                                          broker_url=redis_url, part_max_requests=10)
    workers.start()
    batch_id = _submit(svc, [request_line(f"e{i}") for i in range(10)])
    final = _wait_status(svc, batch_id, "completed", "failed", timeout=90)
    results = results_by_custom_id(svc.engine, batch_id)
    assert sorted(results) == sorted(f"e{i}" for i in range(10))
    attempts = Counter(rows[0]["attempt"] for rows in results.values())
    assert attempts[1] >= 1 and sum(n for a, n in attempts.items() if a > 1) >= 1, attempts
    assert any(b["status"] == "expired" for b in emulator.emulator.stats()["batches"])
    assert final.request_counts.completed == sum(rows[0]["ok"] for rows in results.values())


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.parametrize("point", ["mid_prepare", "after_upload", "after_create", "mid_poll",
                                   "mid_ingest"])
def test_worker_killed_at_each_step_never_duplicates_uploads_batches_or_results(
        point: str, emulator_factory: Any, pipeline_env: Any, pg_database: str,
        redis_url: str) -> None:
    emulator = emulator_factory()
    _, workers, svc = pipeline_env(emulator, database_url=pg_database,
                                          broker_url=redis_url, part_max_requests=4,
                                          ingest_batch_rows=2)
    doomed = workers.start(crash_at=point)
    batch_id = _submit(svc, [request_line(f"k{i}") for i in range(8)])
    assert doomed.wait(timeout=60) == -9  # it really died by SIGKILL at the crash point
    workers.start()
    final = _wait_status(svc, batch_id, "completed", "failed", timeout=90)
    assert final.status == "completed"
    results = results_by_custom_id(svc.engine, batch_id)
    assert sorted(results) == sorted(f"k{i}" for i in range(8))
    assert all(len(rows) == 1 and rows[0]["ok"] for rows in results.values())
    assert _assert_one_upload_and_batch_per_part(emulator) == 2


def test_happy_path_on_the_embedded_default_sqlite_and_embedded_broker(
        emulator_factory: Any, pipeline_env: Any) -> None:
    emulator = emulator_factory()
    settings, workers, svc = pipeline_env(emulator)
    assert settings.is_embedded and settings.effective_broker_url.startswith("sqla+sqlite")
    workers.start()
    batch_id = _submit(svc, [request_line(f"s{i}", f"text {i}") for i in range(9)])
    final = _wait_status(svc, batch_id, "completed", "failed", timeout=90)
    assert final.status == "completed"
    results = results_by_custom_id(svc.engine, batch_id)
    assert sorted(results) == sorted(f"s{i}" for i in range(9))
    assert all(len(rows) == 1 and f"text {cid[1:]}" in rows[0]["response_body"]
               for cid, rows in results.items())
    assert _assert_one_upload_and_batch_per_part(emulator) == 3
    assert workers.task_errors() == []
