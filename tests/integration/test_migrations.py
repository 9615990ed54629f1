"""The schema comes from Alembic and matches the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from batchyard.db import migrate

ROOT = Path(__file__).resolve().parents[2]
TABLES = {"files", "file_chunks", "batches", "parts", "requests", "results", "events",
          "api_keys", "deployment_state"}


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_upgrade_from_empty_creates_every_table_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate.upgrade(url)
    assert TABLES <= _tables(url)
    migrate.check(url)  # raises when the models drifted from the migrations


@pytest.mark.postgres
def test_upgrade_from_empty_and_no_drift_on_postgres(postgres_url: str) -> None:
    migrate.upgrade(postgres_url)
    assert TABLES <= _tables(postgres_url)
    migrate.check(postgres_url)


def test_alembic_cli_from_repo_root_upgrades_and_finds_no_drift(tmp_path: Path) -> None:
    env = {**os.environ, "BATCHYARD_DATA_DIR": str(tmp_path), "BATCHYARD_DATABASE_URL": ""}
    alembic = [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini")]
    for args in (["upgrade", "head"], ["check"]):
        done = subprocess.run([*alembic, *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert "batches" in _tables(f"sqlite:///{tmp_path / 'batchyard.db'}")
