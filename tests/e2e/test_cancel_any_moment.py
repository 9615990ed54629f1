"""A cancel at any moment of a batch's life ends it ``cancelled`` soon, keeping every result
already in, through a REAL worker on Redis + PostgreSQL against the emulator.

The lease (``stale_seconds``) is set far longer than the waits here: a cancel that had to
wait for a lease to run out, or for the sweep, would not get there in time.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from batchyard.services import batches as batch_service
from batchyard.services import reports
from batchyard.services.container import Services
from tests.e2e.helpers import jsonl, request_line, results_by_custom_id, upload, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

#: Far longer than any wait below: nothing may depend on a lease running out.
LEASE = 300.0
#: How long a cancel may take here (a few beat ticks and provider round trips, slow
#: emulator calls included), far below LEASE.
SOON = 45.0


def _env(emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str,
         emulator_knobs: dict[str, Any] | None = None, **knobs: Any) -> tuple[Any, Any, Any]:
    emulator = emulator_factory(**(emulator_knobs or {}))
    _, workers, svc = pipeline_env(emulator, database_url=pg_database, broker_url=redis_url,
                                   stale_seconds=LEASE, **knobs)
    return emulator, workers, svc


def _create(svc: Services, n: int, prefix: str = "c") -> str:
    lines = [request_line(f"{prefix}{i}", f"question {i}") for i in range(n)]
    return batch_service.create_batch(svc, owner=None, input_file_id=upload(svc, jsonl(lines)),
                                      endpoint="/v1/chat/completions").id


def _status(svc: Services, batch_id: str) -> str:
    return batch_service.get_batch(svc, batch_id, owner=None).status


def _part_statuses(svc: Services, batch_id: str) -> list[str]:
    return [p.status for p in reports.list_parts(svc, batch_id, owner=None)]


def _cancelled(svc: Services, batch_id: str) -> Any:
    return wait_for(lambda: _status(svc, batch_id) == "cancelled", timeout=SOON,
                    message="the batch cancelled without waiting for a lease")


def _assert_every_request_has_one_final_row(svc: Services, batch_id: str, n: int) -> dict[
        str, list[dict[str, Any]]]:
    results = results_by_custom_id(svc.engine, batch_id)
    assert len(results) == n and all(len(rows) == 1 for rows in results.values())
    return results


def test_a_cancel_before_validation_ends_cancelled_with_nothing_sent(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator, workers, svc = _env(emulator_factory, pipeline_env, pg_database, redis_url)
    batch_id = _create(svc, 3)
    batch_service.cancel_batch(svc, batch_id, owner=None)  # no worker has seen it yet
    workers.start()
    _cancelled(svc, batch_id)
    assert _part_statuses(svc, batch_id) == []
    assert emulator.emulator.stats()["files_uploaded"] == 0
    assert workers.task_errors() == []


def test_a_cancel_right_after_create_with_a_worker_running_ends_cancelled(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    _, workers, svc = _env(emulator_factory, pipeline_env, pg_database, redis_url)
    workers.start()
    warm_up = _create(svc, 1, prefix="w")  # the worker is up and taking tasks
    wait_for(lambda: _status(svc, warm_up) == "completed", timeout=60,
             message="a first batch completed")
    for _ in range(3):  # prepare and the cancel race differently each time
        batch_id = _create(svc, 3)
        batch_service.cancel_batch(svc, batch_id, owner=None)
        _cancelled(svc, batch_id)
    assert workers.task_errors() == []


def test_a_cancel_during_validation_rolls_the_split_back_and_ends_cancelled(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    _, workers, svc = _env(emulator_factory, pipeline_env, pg_database, redis_url,
                           part_max_requests=1_000, ingest_batch_rows=500)
    workers.start()
    batch_id = _create(svc, 20_000)  # a split that takes a while
    wait_for(lambda: _claimed(svc, batch_id), timeout=60, message="prepare has the batch")
    batch_service.cancel_batch(svc, batch_id, owner=None)
    _cancelled(svc, batch_id)
    # Cancelled mid-split, nothing of it remains; had the split just won the race, its
    # parts were cancelled (or ran to their end) instead.
    assert set(_part_statuses(svc, batch_id)) <= {"cancelled", "ingested"}
    assert workers.task_errors() == []


def _claimed(svc: Services, batch_id: str) -> bool:
    """Prepare took the batch (its due time moved past now)."""
    from batchyard.db import batches

    with svc.sessions() as session:
        row = batches.get_batch_row(session, batch_id)
        return row is not None and row.due_at > time.time() + 1


def test_a_cancel_after_validation_cancels_pending_parts_and_keeps_results(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    # Uploads are slow, so parts wait their turn (pending) behind the worker's 4 threads.
    emulator, workers, svc = _env(
        emulator_factory, pipeline_env, pg_database, redis_url, part_max_requests=1,
        emulator_knobs={"slow_next": 1_000, "slow_delay": 1.0, "fault_path": "/files",
                        "fault_method": "POST"})
    workers.start()
    batch_id = _create(svc, 12)
    wait_for(lambda: "pending" in _part_statuses(svc, batch_id)
             and _status(svc, batch_id) == "in_progress", timeout=60,
             message="split, with parts still pending")
    batch_service.cancel_batch(svc, batch_id, owner=None)
    _cancelled(svc, batch_id)
    statuses = _part_statuses(svc, batch_id)
    assert "cancelled" in statuses and set(statuses) <= {"cancelled", "ingested"}
    results = _assert_every_request_has_one_final_row(svc, batch_id, 12)
    assert any(rows[0]["error_code"] == "batch_cancelled" for rows in results.values())
    assert all(b["status"] in ("cancelled", "completed")
               for b in emulator.emulator.stats()["batches"])
    assert workers.task_errors() == []


def test_a_cancel_during_submit_cancels_the_provider_batch_it_creates(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator, workers, svc = _env(
        emulator_factory, pipeline_env, pg_database, redis_url, part_max_requests=10,
        emulator_knobs={"slow_next": 1, "slow_delay": 2.0, "fault_path": "/files",
                        "fault_method": "POST", "request_latency": 1.0})
    workers.start()
    batch_id = _create(svc, 3)
    wait_for(lambda: _part_statuses(svc, batch_id) == ["uploading"], timeout=60,
             message="the part's upload under way")
    batch_service.cancel_batch(svc, batch_id, owner=None)
    _cancelled(svc, batch_id)
    results = _assert_every_request_has_one_final_row(svc, batch_id, 3)
    assert any(rows[0]["error_code"] == "batch_cancelled" for rows in results.values())
    assert [b["status"] for b in emulator.emulator.stats()["batches"]] == ["cancelled"]
    assert workers.task_errors() == []


def test_a_cancel_in_progress_keeps_finished_results(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator, workers, svc = _env(emulator_factory, pipeline_env, pg_database, redis_url,
                                  part_max_requests=3,
                                  emulator_knobs={"request_latency": 1.0})
    workers.start()
    batch_id = _create(svc, 9)
    wait_for(lambda: any(b["status"] == "in_progress"
                         for b in emulator.emulator.stats()["batches"]), timeout=60,
             message="a provider batch in progress")
    batch_service.cancel_batch(svc, batch_id, owner=None)
    _cancelled(svc, batch_id)
    results = _assert_every_request_has_one_final_row(svc, batch_id, 9)
    assert any(rows[0]["error_code"] == "batch_cancelled" for rows in results.values())
    assert all(b["status"] in ("cancelled", "completed")
               for b in emulator.emulator.stats()["batches"])
    assert workers.task_errors() == []


def test_a_cancel_while_ingesting_keeps_every_ingested_result(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    # Output downloads are slow: the part sits in ingesting while the cancel comes in.
    _, workers, svc = _env(
        emulator_factory, pipeline_env, pg_database, redis_url, part_max_requests=10,
        emulator_knobs={"slow_next": 1_000, "slow_delay": 2.0, "fault_path": "/content",
                        "fault_method": "GET"})
    workers.start()
    batch_id = _create(svc, 4)
    wait_for(lambda: "ingesting" in _part_statuses(svc, batch_id), timeout=60,
             message="a part being ingested")
    batch_service.cancel_batch(svc, batch_id, owner=None)
    _cancelled(svc, batch_id)
    results = _assert_every_request_has_one_final_row(svc, batch_id, 4)
    assert all(rows[0]["ok"] for rows in results.values())  # the provider had answered all
    final = batch_service.get_batch(svc, batch_id, owner=None)
    assert final.request_counts.completed == 4
    assert workers.task_errors() == []
