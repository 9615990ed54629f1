"""Shared helpers for the schedule and webhook tests: own PostgreSQL database, clock, receiver.

Not a conftest (other engineers own that): the test modules import what they need from here.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from batchyard.config import ScheduleSettings, Settings
from batchyard.db import migrate
from batchyard.db.engine import make_engine, make_sessions
from tests.conftest import PG_HOST, PG_PORT, require_service


@pytest.fixture(scope="module")
def sched_db_url() -> Iterator[str]:
    """A PostgreSQL database of this module's own, migrated to head, dropped afterwards."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    name = f"batchyard_sched_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/postgres",
                             isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    try:
        migrate.upgrade(url)
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def clean_schedule_tables(url: str) -> None:
    """Forget every schedule, run and delivery (ticks see every due schedule in the database)."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            for table in ("webhook_deliveries", "schedule_runs", "schedules"):
                conn.execute(sa.text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()


def schedule_settings(url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for these tests: retry delays near zero, no provider keys needed, webhooks
    allowed to reach the local receivers (on 127.0.0.1)."""
    values: dict[str, Any] = {"webhook_backoff_initial": 0.01, "webhook_backoff_max": 0.05,
                              "webhook_timeout_seconds": 5.0, "webhook_max_attempts": 5,
                              "webhook_allow": ["127.0.0.1"]}
    values.update(overrides)
    return Settings(database_url=url, data_dir=data_dir, schedules=ScheduleSettings(**values))


@dataclass
class LightServices:
    """Just what the notifier needs (settings + sessions), without the pipeline's container."""

    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]

    def close(self) -> None:
        self.engine.dispose()


def light_services(settings: Settings) -> LightServices:
    """Settings + engine + sessions on the configured database."""
    engine = make_engine(settings.effective_database_url)
    return LightServices(settings, engine, make_sessions(engine))


@dataclass
class Clock:
    """A controllable clock: services accept it as ``now``."""

    now: float

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    """One POST the receiver got."""

    headers: dict[str, str]
    body: bytes


class Receiver:
    """A real HTTP server on 127.0.0.1 answering POSTs with a scripted list of statuses."""

    def __init__(self, statuses: list[int] | Callable[[int], int]) -> None:
        self.requests: list[Received] = []
        self._statuses = statuses
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                status = outer._record(Received({k.lower(): v for k, v in self.headers.items()},
                                                body))
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def _record(self, received: Received) -> int:
        with self._lock:
            self.requests.append(received)
            n = len(self.requests)
        if callable(self._statuses):
            return self._statuses(n)
        return self._statuses[min(n, len(self._statuses)) - 1]

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
