"""The poll client shared by a worker's poll threads: a REAL worker process polls parts
against the emulator on a real port (PostgreSQL + Redis), and the TCP connections it opened
are counted from the kernel's socket table.

Before the fix, 64 threads shared one httpx connection pool, and httpcore closed connections
it had already handed to waiting requests (surplus keep-alive: more than 20 connections in
the pool); now and then one was already in use, and that poll failed with ``[Errno 9] Bad
file descriptor``. The failure itself came about once in a few thousand polls; the closing
came hundreds of times per sweep, and every close is a connection opened again. Each closed
connection stays in the socket table (TIME_WAIT, a minute), so counting them shows the
closing: 223-692 connections for 1,500 polls on 64 threads before the fix, 62-64 after (one
per request ever in flight at once). The bound allows each of those one replacement (a
connection left idle past its keep-alive is replaced, also after the fix).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from batchyard.cli.processes import settings_env, start_worker_process
from tests.e2e.helpers import seed_parts_in_flight, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

TASK_THREADS = 4
POLL_THREADS = 16
PARTS = 1_500


def _sockets_to(port: int) -> list[str]:
    """The TCP states (hex codes) of every socket on this host whose remote end is ``port``
    on 127.0.0.1: the client sides of connections to it, open or recently closed."""
    states = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        address, remote_port = fields[2].split(":")
        if address == "0100007F" and int(remote_port, 16) == port:
            states.append(fields[3])
    return states


def _scalar(engine: sa.Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql)).scalar()


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_poll_threads_sharing_a_client_never_lose_a_connection_under_a_request(
        emulator_factory: Any, pipeline_env: Any, pg_database: str, redis_url: str,
        tmp_path: Path) -> None:
    emulator = emulator_factory()
    settings, workers, svc = pipeline_env(
        emulator, database_url=pg_database, broker_url=redis_url, poll_min_seconds=3600,
        poll_max_seconds=3600, first_poll_seconds=3600, stale_seconds=600,
        poll_claim_size=100, poll_concurrency=POLL_THREADS)
    log = tmp_path / "poller.log"
    workers.procs.append(start_worker_process(settings_env(settings), concurrency=TASK_THREADS,
                                              beat=True, loglevel="INFO", log=log))
    wait_for(lambda: log.exists() and "deployments.loaded" in log.read_text(), timeout=60,
             message="the worker running tasks")
    assert _sockets_to(emulator.port) == []  # nobody else talks to this emulator

    pairs = seed_parts_in_flight(svc, emulator.emulator, PARTS, parts_per_batch=100)
    wait_for(lambda: _scalar(svc.engine, "SELECT count(*) FROM parts "
                                         "WHERE poll_interval IS NOT NULL") == PARTS,
             timeout=180, message="every part polled once")
    opened = _sockets_to(emulator.port)

    retrieves = {b["id"]: b["retrieves"] for b in emulator.emulator.stats()["batches"]}
    assert sorted({retrieves[provider_id] for _, provider_id in pairs}) == [1]
    assert _scalar(svc.engine, "SELECT count(*) FROM parts WHERE last_error IS NOT NULL") == 0
    # About one connection per request ever in flight at once, not one per few polls.
    assert 0 < len(opened) <= 2 * TASK_THREADS * POLL_THREADS, sorted(opened)
    assert "did not answer" not in log.read_text()
