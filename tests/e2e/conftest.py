"""Fixtures for pipeline tests with a REAL worker process: emulator, databases, workers."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from batchyard.cli.processes import settings_env, start_worker_process, stop_process
from batchyard.config import Settings
from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.e2e.helpers import InlineDriver, fast_settings, fresh_pg_database

FAST_EMULATOR = {"validation_delay": 0.0, "finalize_delay": 0.0, "cancel_grace": 0.0}


@pytest.fixture()
def emulator_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Start an emulator on a real port with the given knobs (stopped at teardown)."""
    servers: list[EmulatorServer] = []

    def start(**knobs: Any) -> EmulatorServer:
        srv = EmulatorServer(EmulatorConfig(**{**FAST_EMULATOR, **knobs})).start()
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


@pytest.fixture()
def pg_database(postgres_url: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own (runs never see each other)."""
    with fresh_pg_database(postgres_url) as url:
        yield url


class Workers:
    """Real ``batchyard worker --beat`` processes for one Settings; all stopped at teardown."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings = settings
        self.log = log
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **overrides: Any) -> subprocess.Popen[bytes]:
        """Start one worker (with the scheduler); ``crash_at=...`` arms the crash hook."""
        settings = self.settings.model_copy(update=overrides)
        proc = start_worker_process(settings_env(settings), concurrency=4, beat=True,
                                    loglevel="INFO", log=self.log)
        self.procs.append(proc)
        return proc

    def task_errors(self) -> list[str]:
        """Log lines of tasks that raised (a healthy run has none)."""
        if not self.log.exists():
            return []
        return [line for line in self.log.read_text(errors="replace").splitlines()
                if "raised unexpected" in line]

    def stop_all(self) -> None:
        """Stop every worker started here."""
        for proc in self.procs:
            stop_process(proc)


@pytest.fixture()
def pipeline_env(tmp_path: Path, unique_name: str) -> Iterator[Callable[..., Any]]:
    """Build settings (own queue names), migrate, and hand back (settings, workers, driver).

    The driver is used only to submit and read (its nudges go through Celery).
    """
    created: list[tuple[Workers, Any]] = []

    def make(emulator: EmulatorServer, **kwargs: Any) -> tuple[Settings, Workers, Any]:
        settings = fast_settings(tmp_path / "data", emulator_url=emulator.base_url,
                                 queue=unique_name, **kwargs)
        migrate.upgrade(settings.effective_database_url)
        workers = Workers(settings, tmp_path / "worker.log")
        from batchyard.services.container import build_services

        svc = build_services(settings)
        created.append((workers, svc))
        return settings, workers, svc

    yield make
    for workers, svc in created:
        workers.stop_all()
        svc.close()
    log = tmp_path / "worker.log"
    if log.exists():
        print(log.read_text(errors="replace")[-5000:])  # shown when a test fails


__all__ = ["InlineDriver", "Workers"]
