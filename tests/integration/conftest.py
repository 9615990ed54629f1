"""Fixtures shared by the integration tests that drive the pipeline inline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from batchyard.db import migrate
from batchyard.emulator import EmulatorConfig, EmulatorServer
from tests.e2e.helpers import InlineDriver, fast_settings, fresh_pg_database


@pytest.fixture()
def emulator() -> Iterator[EmulatorServer]:
    """The emulator on a real port, with no artificial delays."""
    cfg = EmulatorConfig(validation_delay=0.0, finalize_delay=0.0, cancel_grace=0.0)
    with EmulatorServer(cfg) as srv:
        yield srv


@pytest.fixture()
def driver(tmp_path: Path, emulator: EmulatorServer) -> Iterator[InlineDriver]:
    """The pipeline's tasks run inline on a fresh SQLite database (modules may override)."""
    settings = fast_settings(tmp_path, emulator_url=emulator.base_url)
    migrate.upgrade(settings.effective_database_url)
    inline = InlineDriver(settings)
    yield inline
    inline.svc.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: SQLite, then PostgreSQL (a test asking for it runs on both)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'by.db'}"
        return
    with fresh_pg_database(request.getfixturevalue("postgres_url")) as url:
        yield url
