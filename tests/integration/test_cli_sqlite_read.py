"""The CLI's light path on the embedded SQLite database: ``status`` reads through
``db.sqlite_read`` (stdlib sqlite3) and gets the same records as the service layer, and the
read commands do not import SQLAlchemy, the table models, Celery, httpx or the services."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from batchyard.cli import app
from batchyard.cli.local import LocalBackend, SqliteBackend, sqlite_path
from batchyard.db import sqlite_read
from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from tests.e2e.helpers import InlineDriver, jsonl, request_line, upload


def _batch(driver: InlineDriver, lines: list[dict], **kwargs: object) -> str:
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions", **kwargs)  # type: ignore[arg-type]
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status in ("completed", "failed"))
    return batch.id


@pytest.fixture()
def batch_ids(driver: InlineDriver, emulator: EmulatorServer) -> list[str]:
    """A batch with failed requests (two error codes' worth) and metadata, a clean one, and
    one the provider rejected (the batch's own errors)."""
    mixed = _batch(driver, [request_line("ok-1"), request_line("bad-1", x_emulator={"status": 400}),
                            request_line("ok-2"), request_line("bad-2", x_emulator={"status": 429}),
                            request_line("bad-3", x_emulator={"status": 400})],
                   metadata={"team": "search"})
    clean = _batch(driver, [request_line("fine")])
    emulator.emulator.set_faults(fail_validation_next=1, fail_validation_code="invalid_json_line")
    rejected = _batch(driver, [request_line("nope")])
    return [mixed, clean, rejected]


def test_status_reads_the_same_records_as_the_service_layer(
        driver: InlineDriver, batch_ids: list[str]) -> None:
    cfg = driver.svc.settings
    path = sqlite_path(cfg)
    assert path is not None
    full = LocalBackend(driver.svc)
    light = SqliteBackend.open_file(cfg, path)
    try:
        assert light.list_batches(20) == full.list_batches(20)
        assert light.list_batches(2) == full.list_batches(2)
        for batch_id in batch_ids:
            assert light.get_batch(batch_id) == full.get_batch(batch_id)
            assert light.parts(batch_id) == full.parts(batch_id)
            assert light.failures(batch_id) == full.failures(batch_id)
            assert light.failures(batch_id, examples=1) == full.failures(batch_id, examples=1)
            for failed_only in (False, True):
                assert list(light.result_lines(batch_id, failed_only=failed_only)) == list(
                    full.result_lines(batch_id, failed_only=failed_only))
            assert light.request_costs(batch_id) == full.request_costs(batch_id)
        mixed, _, rejected = batch_ids
        assert light.get_batch(mixed).metadata == {"team": "search"}
        assert sum(g.count for g in light.failures(mixed)) == 3
        assert len(light.failures(mixed)) >= 1
        assert light.get_batch(rejected).errors is not None
        assert len(list(light.result_lines(mixed, failed_only=True))) == 3
        assert len(list(light.result_lines(mixed, failed_only=False))) == 5
        paged = sqlite_read.result_lines(light._conn, mixed, failed_only=False, page_rows=2)
        assert list(paged) == list(full.result_lines(mixed, failed_only=False))
        assert [c["cost"] for c in light.request_costs(mixed)["data"]].count(None) < 5
        assert light._svc is None  # nothing above needed the service layer
    finally:
        light.close()


def test_status_output_is_unchanged_by_the_light_path(
        driver: InlineDriver, batch_ids: list[str]) -> None:
    env = {"BATCHYARD_DATA_DIR": str(driver.svc.settings.data_dir), "BATCHYARD_URL": "",
           "COLUMNS": "200"}
    mixed = batch_ids[0]
    shown = CliRunner().invoke(app, ["status", mixed, "--json"], env=env)
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["metadata"] == {"team": "search"} and report["exit_code"] == 3
    assert report["request_counts"] == {"total": 5, "completed": 2, "failed": 3}
    assert sum(g["count"] for g in report["failures"]) == 3
    assert report["parts"] and {p["status"] for p in report["parts"]} == {"ingested"}
    listed = CliRunner().invoke(app, ["status"], env=env)
    assert listed.exit_code == 0 and all(b in listed.output for b in batch_ids)
    missing = CliRunner().invoke(app, ["status", "batch_nope"], env=env)
    assert missing.exit_code == 1 and "No such Batch object: batch_nope" in missing.output


def test_an_old_schema_is_refused_on_the_light_path(driver: InlineDriver) -> None:
    env = {"BATCHYARD_DATA_DIR": str(driver.svc.settings.data_dir), "BATCHYARD_URL": ""}
    with driver.svc.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = 'older'"))
    refused = CliRunner().invoke(app, ["status"], env=env)
    assert refused.exit_code == 1
    assert "has a schema of another batchyard version; run `batchyard db upgrade`" in (
        refused.output)


#: What the read commands must not import on the embedded database: the ORM and the table
#: models, the service layer, the broker and the HTTP clients (and Alembic).
NOT_ON_THE_READ_PATH = ("sqlalchemy", "alembic", "celery", "kombu", "httpx", "yaml",
                        "batchyard.db.models", "batchyard.services", "batchyard.deployments",
                        "batchyard.providers", "batchyard.storage", "batchyard.emulator")

_RUN_AND_LIST_MODULES = """
import sys
out, args = sys.argv[1], sys.argv[2:]
sys.argv = ["batchyard", *args]
try:
    from batchyard.cli import main
    main()
finally:
    with open(out, "w") as fh:
        fh.write("\\n".join(sorted(sys.modules)))
"""


@pytest.mark.parametrize("args", [
    ["status"], ["status", "BATCH"], ["status", "BATCH", "--json"], ["status", "batch_nope"],
    ["results", "BATCH"], ["results", "BATCH", "--failed-only", "-o", "OUT.csv"],
    ["--version"], ["--help"]])
def test_read_commands_import_only_what_they_need(
        driver: InlineDriver, batch_ids: list[str], tmp_path: Path, args: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
    env["BATCHYARD_DATA_DIR"] = str(driver.svc.settings.data_dir)
    listing = tmp_path / "modules.txt"
    argv = [{"BATCH": batch_ids[0], "OUT.csv": str(tmp_path / "out.csv")}.get(a, a)
            for a in args]
    done = subprocess.run([sys.executable, "-c", _RUN_AND_LIST_MODULES, str(listing), *argv],
                          env=env, capture_output=True, text=True, check=False)
    assert done.returncode == (1 if "batch_nope" in argv else 0), done.stderr
    loaded = listing.read_text().split()
    heavy = sorted(m for m in loaded
                   if any(m == name or m.startswith(name + ".") for name in NOT_ON_THE_READ_PATH))
    assert heavy == []
