"""The pipeline CLI: `batchyard demo` end to end (embedded default, real worker process),
`run`'s local validation, `results` exports and `status`."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from batchyard.cli import app
from batchyard.cli.demo import example_path

pytestmark = pytest.mark.slow


def _env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATCHYARD_")}
    env["BATCHYARD_DATA_DIR"] = str(data_dir)
    return env


def test_demo_runs_the_shipped_example_and_shows_results_from_sql(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "batchyard", "demo", "--data-dir",
                           str(data_dir)], env=_env(tmp_path), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    expected = sum(1 for line in example_path().read_bytes().splitlines() if line.strip())
    assert f"ended completed: {expected} requests" in " ".join(done.stdout.split())
    assert "SELECT line_no, custom_id" in done.stdout
    batch_id = next(w for w in done.stdout.split() if w.startswith("batch_")).rstrip(":")
    out = tmp_path / "out.csv"
    runner = CliRunner()
    exported = runner.invoke(app, ["results", batch_id, "-o", str(out)],
                             env={"BATCHYARD_DATA_DIR": str(data_dir)})
    assert exported.exit_code == 0, exported.output
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == expected
    assert {r["ok"] for r in rows} == {"True", "False"}  # the example has one final 400
    assert all(r["content"] for r in rows if r["ok"] == "True")
    jsonl_out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["results", batch_id, "-o", str(jsonl_out)],
                         env={"BATCHYARD_DATA_DIR": str(data_dir)}).exit_code == 0
    lines = [orjson.loads(line) for line in jsonl_out.read_bytes().splitlines()]
    assert [line["custom_id"] for line in lines] == [r["custom_id"] for r in rows]
    status = runner.invoke(app, ["status", batch_id], env={"BATCHYARD_DATA_DIR": str(data_dir)})
    assert status.exit_code == 0 and "completed" in status.output


def test_run_rejects_a_bad_line_locally_with_its_number(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    good = example_path().read_bytes().splitlines()[0]
    bad.write_bytes(good + b"\n" + good.replace(b"fact-001", b"fact-xyz") + b"\n{oops\n")
    result = CliRunner().invoke(app, ["run", str(bad)],
                                env={"BATCHYARD_DATA_DIR": str(tmp_path / "d")})
    assert result.exit_code == 1
    assert "line 3" in result.output
    assert not (tmp_path / "d" / "batchyard.db").exists() or "batch_" not in result.output


def test_ctrl_c_during_run_wait_leaves_the_batch_and_says_how_to_check(tmp_path: Path) -> None:
    import signal
    import time

    # No worker is running: the batch stays queued while `run --wait` follows it.
    subprocess.run([sys.executable, "-m", "batchyard", "db", "upgrade"],
                   env=_env(tmp_path / "d"), check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, "-m", "batchyard", "run", str(example_path()),
                             "--wait"], env=_env(tmp_path / "d"), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "batch batch_... created (facts.jsonl)"
    assert "created" in first, first
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=30)
    batch_id = first.split()[1]
    assert proc.returncode == 130
    assert f"batchyard status {batch_id}" in rest
    status = CliRunner().invoke(app, ["status", batch_id],
                                env={"BATCHYARD_DATA_DIR": str(tmp_path / "d")})
    assert "validating" in status.output  # still there, waiting for a worker
