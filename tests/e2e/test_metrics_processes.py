"""/metrics with two API processes (``serve --workers 2``), a real worker exposing its own
metrics port, PostgreSQL + Redis, and an emulator that answers some batch creates with 429
and 500: the exposed numbers are checked against the database and the injected faults."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from batchyard.cli.processes import settings_env, start_worker_process, stop_process
from batchyard.db import migrate
from tests.e2e.helpers import fast_settings, jsonl, request_line, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class CountingClient:
    """An HTTP client that remembers how many answers it got per (method, route, status)."""

    def __init__(self, base: str) -> None:
        self.http = httpx.Client(base_url=base, timeout=30, limits=httpx.Limits(
            max_keepalive_connections=0))  # new connections spread over the processes
        self.seen: Counter[tuple[str, str, str]] = Counter()

    def call(self, method: str, path: str, route: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        self.seen[(method, route, str(response.status_code))] += 1
        return response


@pytest.fixture()
def stack(tmp_path: Path, emulator_factory: Any, pg_database: str, redis_url: str,
          unique_name: str) -> Any:
    emulator = emulator_factory(rate_limit_next=2, server_error_next=3, retry_after=0.05,
                                fault_path="/batches", fault_method="POST")
    settings = fast_settings(tmp_path / "data", emulator_url=emulator.base_url,
                             database_url=pg_database, broker_url=redis_url, queue=unique_name)
    migrate.upgrade(settings.effective_database_url)
    env = settings_env(settings)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    worker_port, api_port = free_port(), free_port()
    worker = start_worker_process({**env, "BATCHYARD_METRICS__WORKER_PORT": str(worker_port)},
                                  concurrency=4, beat=True, loglevel="INFO",
                                  log=tmp_path / "worker.log")
    with (tmp_path / "api.log").open("ab") as log:
        api = subprocess.Popen(
            [sys.executable, "-m", "batchyard", "serve", "--workers", "2", "--port",
             str(api_port)], env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    base = f"http://127.0.0.1:{api_port}"
    engine = sa.create_engine(pg_database)
    try:
        wait_for(lambda: _up(f"{base}/health/liveness"), timeout=60, message="API up")
        yield {"base": base, "worker": f"http://127.0.0.1:{worker_port}/metrics",
               "engine": engine, "dir": settings.data_dir / "prometheus"}
    finally:
        engine.dispose()
        stop_process(api)
        stop_process(worker)
        print((tmp_path / "worker.log").read_text(errors="replace")[-3000:])
        print((tmp_path / "api.log").read_text(errors="replace")[-3000:])


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _submit(client: CountingClient, n: int) -> str:
    upload = client.call("POST", "/v1/files", "/v1/files",
                         files={"file": ("in.jsonl", jsonl([request_line(f"r{i}")
                                                            for i in range(n)]))},
                         data={"purpose": "batch"})
    assert upload.status_code == 200, upload.text
    created = client.call("POST", "/v1/batches", "/v1/batches", json={
        "input_file_id": upload.json()["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def _status(client: CountingClient, batch_id: str) -> str:
    response = client.call("GET", f"/v1/batches/{batch_id}", "/v1/batches/{batch_id}")
    return str(response.json()["status"])


def test_metrics_match_the_database_and_the_injected_provider_faults(stack: Any) -> None:
    client = CountingClient(stack["base"])
    try:
        _run_and_check(client, stack)
    finally:
        client.http.close()


def _run_and_check(client: CountingClient, stack: Any) -> None:
    batch_ids = [_submit(client, 6), _submit(client, 3)]
    for batch_id in batch_ids:
        wait_for(lambda b=batch_id: _status(client, b) == "completed", timeout=120,
                 message="batch completed")
    # Spread reads over both API processes until each has written its own counters.
    with ThreadPoolExecutor(8) as pool:
        wait_for(lambda: list(pool.map(lambda _: _status(client, batch_ids[0]), range(16)))
                 and len(list(Path(stack["dir"]).glob("counter_*.db"))) >= 2,
                 timeout=60, message="both API processes served requests")

    api = scrape(f"{stack['base']}/metrics")
    for (method, route, status), count in client.seen.items():
        assert value(api, "batchyard_api_requests_total", method=method, route=route,
                     status=status) == count, (method, route, status)
    assert value(api, "batchyard_api_request_duration_seconds_count", method="GET",
                 route="/v1/batches/{batch_id}") == sum(
        n for (m, r, _), n in client.seen.items() if r == "/v1/batches/{batch_id}")

    with stack["engine"].connect() as conn:
        by_status = dict(conn.execute(sa.text(
            "SELECT status, count(*) FROM batches GROUP BY status")).all())
        parts = conn.execute(sa.text(
            "SELECT status, deployment, count(*) FROM parts GROUP BY status, deployment")).all()
        ok, failed = conn.execute(sa.text(
            "SELECT count(*) FILTER (WHERE ok), count(*) FILTER (WHERE NOT ok) FROM results")
        ).one()
        spend = conn.execute(sa.text("SELECT sum(cost_pico) FROM batches")).scalar_one()
    assert by_status == {"completed": 2}
    assert value(api, "batchyard_batches", status="completed") == 2
    assert value(api, "batchyard_batches", status="in_progress") == 0
    assert len(parts) >= 1 and all(status == "ingested" for status, _, _ in parts)
    assert not [k for k in api if k[0] == "batchyard_parts"]  # no live part left
    assert value(api, "batchyard_requests", state="succeeded") == ok == 9
    assert value(api, "batchyard_requests", state="failed") == failed == 0
    assert value(api, "batchyard_requests", state="pending") == 0
    assert value(api, "batchyard_oldest_inflight_batch_age_seconds") == 0
    assert spend > 0
    assert value(api, "batchyard_cost_usd") == pytest.approx(int(spend) / 10**12)

    worker = scrape(stack["worker"])
    part_count = sum(count for _, _, count in parts)
    deployment = parts[0][1]
    calls = {outcome: value(worker, "batchyard_provider_calls_total", operation="create_batch",
                            deployment=deployment, outcome=outcome)
             for outcome in ("ok", "429", "5xx")}
    assert calls == {"ok": part_count, "429": 2, "5xx": 3}
    assert value(worker, "batchyard_rows_ingested_total", outcome="ok") == ok
    assert value(worker, "batchyard_provider_upload_bytes_total", deployment=deployment) > 0
    assert value(worker, "batchyard_provider_download_bytes_total", deployment=deployment) > 0
    assert value(worker, "batchyard_tasks_total", task="submit", outcome="ok") >= part_count
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # the test process stays clean
