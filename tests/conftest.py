"""Shared fixtures: real PostgreSQL and Redis, found on 127.0.0.1.

A test that needs a service skips when it is missing on a developer's machine, and fails
when ``CI=true`` (CI must never go green by skipping the pipeline tests).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

PG_HOST = os.environ.get("BATCHYARD_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BATCHYARD_TEST_PG_PORT", "5432"))
REDIS_HOST = os.environ.get("BATCHYARD_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("BATCHYARD_TEST_REDIS_PORT", "6379"))


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip (locally) or fail (under CI=true) when a service is not reachable."""
    if _port_open(host, port):
        return
    message = f"{name} is not reachable on {host}:{port}"
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"{message} (CI=true: service tests must not be skipped)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped at the end."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    from tests.e2e.helpers import fresh_pg_database

    with fresh_pg_database(f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres") as url:
        yield url


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A Redis URL on the shared server; tests isolate themselves by queue/key names."""
    require_service("Redis", REDIS_HOST, REDIS_PORT)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


@pytest.fixture()
def unique_name() -> str:
    """A name unique to this test (queues, key prefixes, database names)."""
    return f"by{os.getpid()}{uuid.uuid4().hex[:8]}"
