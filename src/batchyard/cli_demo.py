"""``batchyard demo``: the whole pipeline on this machine, no Redis, no PostgreSQL.

Starts the provider emulator on a free port, the embedded pipeline (SQLite + the embedded
SQLite broker, one worker process with the scheduler), submits the shipped example, follows
it, then prints a summary and the SQL that shows the results (and runs it).
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import typer

from batchyard.cli_pipeline import _services, settings_env, start_worker_process, stop_process

SHOW_SQL = """SELECT line_no, custom_id, status_code, attempt,
       substr(json_extract(response_body, '$.choices[0].message.content'), 1, 50) AS answer,
       error_code
FROM results WHERE batch_id = '{batch_id}'
ORDER BY line_no LIMIT {limit};"""


def example_path() -> Path:
    """The shipped example JSONL."""
    return Path(str(resources.files("batchyard.examples").joinpath("facts.jsonl")))


def demo(file: Path | None = typer.Option(None, help="Use this JSONL instead of the example."),
         data_dir: Path | None = typer.Option(None, help="Keep the demo's data here "
                                                         "(default: a new temp dir)."),
         rows: int = typer.Option(8, help="Result rows to show.")) -> None:
    """Run the pipeline end to end on a shipped example against the local emulator."""
    from batchyard.cli_run import follow, submit_file
    from batchyard.emulator import EmulatorConfig, EmulatorServer

    workdir = data_dir or Path(tempfile.mkdtemp(prefix="batchyard-demo-"))
    source = file or example_path()
    emu_cfg = EmulatorConfig(validation_delay=0.3, finalize_delay=0.3, cancel_grace=0.1,
                             request_latency=0.01)
    with EmulatorServer(emu_cfg) as emulator:
        settings = demo_settings(workdir, f"{emulator.base_url}/v1")
        typer.echo(f"emulator on {emulator.base_url}; data in {workdir}")
        svc = _services(settings)
        proc = start_worker_process(settings_env(settings), concurrency=4, beat=True,
                                    log=workdir / "worker.log")
        try:
            batch = submit_file(svc, source)
            typer.echo(f"batch {batch.id}: {source.name} submitted; worker pid {proc.pid}")
            final = follow(svc, batch.id, timeout=300)
            _summary(svc, final, emulator.emulator.stats(), rows, settings)
        finally:
            stop_process(proc)
            svc.close()


def demo_settings(workdir: Path, api_base: str) -> Any:
    """Embedded settings with demo-friendly speeds (seconds, not hours)."""
    from pydantic import SecretStr

    from batchyard.config import PipelineSettings, Settings

    pipeline = PipelineSettings(part_max_requests=25, poll_min_seconds=0.3,
                                poll_max_seconds=1.0, tick_seconds=0.3, stale_seconds=10.0,
                                quota_retry_seconds=2.0, queue="demo")
    return Settings(data_dir=workdir, database_url=None, broker_url=None,
                    openai_api_key=SecretStr("sk-demo"), openai_api_base=api_base,
                    pipeline=pipeline)


def _summary(svc: Any, batch: Any, stats: dict[str, Any], rows: int, settings: Any) -> None:
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table
    from sqlalchemy import text

    console = Console()
    counts = batch.request_counts
    console.print(f"\n[bold]{batch.id}[/] ended [bold]{batch.status}[/]: {counts.total} "
                  f"requests, {counts.completed} succeeded, {counts.failed} failed; "
                  f"{stats['batches_created']} provider batches, {stats['files_uploaded']} "
                  "uploads (retries included)")
    sql = SHOW_SQL.format(batch_id=batch.id, limit=rows)
    db_file = settings.data_dir.resolve() / "batchyard.db"
    console.print(f"\nEvery result is a row in SQL. See them with:\n  sqlite3 {db_file} \"...\"\n")
    console.print(Syntax(sql, "sql"))
    with svc.engine.connect() as conn:
        result = conn.execute(text(sql))
        table = Table(*result.keys())
        for row in result:
            table.add_row(*("" if v is None else str(v) for v in row))
    console.print(table)
    console.print("\nAll results as JSONL or CSV: "
                  f"BATCHYARD_DATA_DIR={settings.data_dir} batchyard results {batch.id} "
                  "-o results.csv")
