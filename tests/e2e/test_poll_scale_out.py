"""Polling spread over worker processes, and a 429 that pauses a whole deployment: REAL
worker processes on Redis + PostgreSQL against the emulator on a real port."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.cli.processes import settings_env, start_worker_process
from tests.e2e.helpers import seed_parts_in_flight, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


def _scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


def test_two_worker_processes_never_poll_the_same_part_in_one_sweep(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str,
        tmp_path: Path) -> None:
    emulator = emulator_factory()
    # One poll per part per sweep: the next is an hour away, and the lease outlives the test.
    settings, workers, svc = pipeline_env(
        emulator, database_url=pg_database, broker_url=redis_url, poll_min_seconds=3600,
        poll_max_seconds=3600, first_poll_seconds=3600, stale_seconds=600,
        poll_claim_size=10, poll_concurrency=4)
    logs = [tmp_path / "poller-1.log", tmp_path / "poller-2.log"]
    for log in logs:  # both with their own beat: twice the poll nudges, still one poll each
        workers.procs.append(start_worker_process(settings_env(settings), concurrency=4,
                                                  beat=True, loglevel="INFO", log=log))
    # A worker builds its services on its first task: from then on it takes poll nudges too.
    wait_for(lambda: all(log.exists() and log.read_text().count("deployments.loaded") >= 2
                         for log in logs), timeout=60, message="both workers running tasks")

    pairs = seed_parts_in_flight(svc, emulator.emulator, 300, parts_per_batch=30)
    for _, provider_id in pairs:  # the provider reports progress: live counts must follow
        emulator.emulator.store.batches[provider_id].completed = 7
    wait_for(lambda: _scalar(svc.engine, "SELECT count(*) FROM parts "
                                         "WHERE poll_interval IS NOT NULL") == 300,
             timeout=120, message="every part polled once")

    retrieves = {b["id"]: b["retrieves"] for b in emulator.emulator.stats()["batches"]}
    assert sorted({retrieves[provider_id] for _, provider_id in pairs}) == [1]
    polled = [log.read_text().count("provider status validating -> in_progress")
              for log in logs]
    assert sum(polled) == 300 and all(n > 0 for n in polled), polled
    # Each task adds up its batches' counts after its parts' commit: they follow at once.
    wait_for(lambda: _scalar(svc.engine, "SELECT count(*) FROM batches WHERE completed = 210 "
                                         "AND total = 3000") == 10,
             timeout=30, message="every batch counting its parts' provider progress")
    assert not [line for log in logs for line in log.read_text().splitlines()
                if "raised unexpected" in line]


def test_a_429_pauses_polls_of_the_whole_deployment_not_part_by_part(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str) -> None:
    emulator = emulator_factory()
    _, workers, svc = pipeline_env(emulator, database_url=pg_database, broker_url=redis_url,
                                   poll_min_seconds=0.1, poll_max_seconds=0.2,
                                   stale_seconds=600, poll_claim_size=10, poll_concurrency=1)
    pairs = seed_parts_in_flight(svc, emulator.emulator, 40, parts_per_batch=10)
    budget = 10_000
    emulator.emulator.set_faults(rate_limit_next=budget, retry_after=60, fault_path="/batches/",
                                 fault_method="GET")
    workers.start()
    paused_until = wait_for(lambda: _scalar(svc.engine, "SELECT max(poll_paused_until) "
                                                        "FROM deployment_state"),
                            timeout=60, message="the deployment's polls paused")
    time.sleep(2.0)  # ten ticks' worth of nudges while the deployment is paused
    answered_429 = budget - emulator.emulator.faults.rate_limit_next
    # Part by part, each of the 40 parts would have drawn its own 429s by now (polls every
    # 0.1-0.2 s); paused, only the claims already under way when the first 429 came did.
    assert 1 <= answered_429 < len(pairs), answered_429
    assert sum(b["retrieves"] for b in emulator.emulator.stats()["batches"]) == 0
    with svc.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT next_poll_at, poll_interval FROM parts")).all()
    assert len(rows) == 40
    # Every part waits for the deployment (none polled on its own schedule), and a pause is
    # not the part's fault: its poll backoff did not grow.
    assert all(next_at >= paused_until - 1 and interval is None for next_at, interval in rows)
    assert "rate-limited polling" in workers.log.read_text()

    # The provider recovers and the pause passes (moved into the past rather than waited for).
    emulator.emulator.set_faults(rate_limit_next=0)
    with svc.engine.begin() as conn:
        conn.execute(sa.text("UPDATE deployment_state SET poll_paused_until = "
                             "poll_paused_until - 120"))
        conn.execute(sa.text("UPDATE parts SET next_poll_at = next_poll_at - 120"))
    wait_for(lambda: all(b["retrieves"] >= 1 for b in emulator.emulator.stats()["batches"]),
             timeout=60, message="every part polled once the pause passed")
    assert workers.task_errors() == []
