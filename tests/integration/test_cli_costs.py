"""`batchyard estimate`, `batchyard cost`, `results` with per-request cost, `status` with the
batch's cost, and key budgets from the CLI, over a batch the inline pipeline ran."""

from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

import orjson
import sqlalchemy as sa
from typer.testing import CliRunner

from batchyard.cli import app
from batchyard.domain.pricing import from_pico
from batchyard.emulator import EmulatorServer
from batchyard.services import batches as batch_service
from batchyard.services import keys
from tests.e2e.helpers import InlineDriver, jsonl, request_line, upload


def _env(driver: InlineDriver) -> dict[str, str]:
    return {"BATCHYARD_DATA_DIR": str(driver.svc.settings.data_dir), "BATCHYARD_URL": ""}


def _done_batch(driver: InlineDriver) -> str:
    lines = [request_line(f"r{i}", "how much is this " * (i + 1)) for i in range(6)]
    batch = batch_service.create_batch(driver.svc, owner=None,
                                       input_file_id=upload(driver.svc, jsonl(lines)),
                                       endpoint="/v1/chat/completions")
    driver.run_until(lambda: batch_service.get_batch(
        driver.svc, batch.id, owner=None).status == "completed")
    return batch.id


def _row_costs(driver: InlineDriver, batch_id: str) -> dict[str, Decimal]:
    with driver.svc.engine.connect() as conn:
        return {cid: from_pico(pico) for cid, pico in conn.execute(sa.text(
            "SELECT custom_id, cost_pico FROM results WHERE batch_id = :b"), {"b": batch_id})}


def test_estimate_prices_a_file_locally_and_sends_nothing(
        driver: InlineDriver, emulator: EmulatorServer, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    lines = [request_line(f"e{i}", "x" * 400) for i in range(10)]
    for line in lines:
        line["body"]["max_tokens"] = 100
    path.write_bytes(jsonl(lines))
    done = CliRunner().invoke(app, ["estimate", str(path), "--json"], env=_env(driver))
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["requests"] == 10 and data["output_tokens"] == 1_000
    # ~4 characters per token of each line, priced at gpt-4o-mini's batch rates.
    expected_in = sum(len(orjson.dumps(line)) // 4 for line in lines)
    assert data["input_tokens"] == expected_in
    assert Decimal(data["estimate"]) == (Decimal(expected_in) * Decimal("0.075")
                                         + Decimal(1_000) * Decimal("0.3")) / 10**6
    assert emulator.emulator.stats()["files_uploaded"] == 0
    text = CliRunner().invoke(app, ["estimate", str(path)], env=_env(driver))
    assert "requests 10" in text.output and "estimate $" in text.output
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl(lines[:1]) + b"{oops\n")
    refused = CliRunner().invoke(app, ["estimate", str(bad)], env=_env(driver))
    assert refused.exit_code == 2 and "line 2" in refused.output


def test_cost_results_and_status_show_the_stored_amounts(
        driver: InlineDriver, emulator: EmulatorServer, tmp_path: Path) -> None:
    batch_id = _done_batch(driver)
    rows = _row_costs(driver, batch_id)
    total = sum(rows.values(), Decimal(0))
    runner = CliRunner()
    report = runner.invoke(app, ["cost", "--by", "batch", "--json"], env=_env(driver))
    assert report.exit_code == 0, report.output
    data = json.loads(report.output)
    assert Decimal(data["total"]) == total > 0
    assert [(g["group"], g["requests"]) for g in data["data"]] == [(batch_id, 6)]
    table = runner.invoke(app, ["cost", "--by", "day"], env=_env(driver))
    assert table.exit_code == 0 and f"{total:.6f}" in table.output
    assert runner.invoke(app, ["cost", "--by", "colour"], env=_env(driver)).exit_code == 2

    out = tmp_path / "out.csv"
    assert runner.invoke(app, ["results", batch_id, "-o", str(out)],
                         env=_env(driver)).exit_code == 0
    with out.open(encoding="utf-8") as fh:
        exported = {r["custom_id"]: r for r in csv.DictReader(fh)}
    assert {cid: Decimal(r["cost_usd"]) for cid, r in exported.items()} == rows
    assert all(r["price_source"].startswith("genai-prices") for r in exported.values())
    out_jsonl = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["results", batch_id, "-o", str(out_jsonl)],
                         env=_env(driver)).exit_code == 0
    lines = [orjson.loads(line) for line in out_jsonl.read_bytes().splitlines()]
    assert {x["custom_id"]: Decimal(x["batchyard_cost"]["cost"]) for x in lines} == rows

    status = runner.invoke(app, ["status", batch_id], env=_env(driver))
    assert status.exit_code == 0 and f"${total:.6f} spent" in status.output


def test_keys_budget_and_list_show_budget_and_spend(
        driver: InlineDriver, emulator: EmulatorServer) -> None:
    record, _ = keys.create_key(driver.svc, name="team")
    runner = CliRunner()
    done = runner.invoke(app, ["keys", "budget", record.id, "--max-usd", "25", "--monthly"],
                         env=_env(driver))
    assert done.exit_code == 0, done.output
    assert "budget 25 (monthly), spent 0" in done.output
    listed = runner.invoke(app, ["keys", "list"], env={**_env(driver), "COLUMNS": "250"})
    assert "25 (monthly)" in listed.output
    bad = runner.invoke(app, ["keys", "budget", record.id, "--max-usd", "lots"],
                        env=_env(driver))
    assert bad.exit_code == 2
