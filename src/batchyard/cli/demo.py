"""``batchyard demo``: the whole pipeline on this machine, no Redis, no PostgreSQL.

Starts the provider emulator on a free port, the embedded pipeline (SQLite + the embedded
SQLite broker, one worker process with the scheduler), submits the shipped example, follows
it, then prints a summary and the SQL that shows the results, with its first rows.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from batchyard.config import Settings
    from batchyard.domain.records import BatchRecord
    from batchyard.services.container import Services

SHOW_SQL = """SELECT line_no, custom_id, status_code, attempt,
       substr(json_extract(response_body, '$.choices[0].message.content'), 1, 50) AS answer,
       error_code
FROM results WHERE batch_id = '{batch_id}'
ORDER BY line_no LIMIT {limit};"""


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command()(demo)


def example_path() -> Path:
    """The shipped example JSONL."""
    return Path(str(resources.files("batchyard.examples").joinpath("facts.jsonl")))


def demo(file: Annotated[Path | None, typer.Option(
             help="Use this JSONL instead of the example.", show_default=False)] = None,
         data_dir: Annotated[Path | None, typer.Option(
             help="Keep the demo's data here (default: a new temp dir).", show_default=False)
         ] = None,
         rows: Annotated[int, typer.Option(help="Result rows to show.")] = 8) -> None:
    """Run the pipeline end to end on a shipped example against the local emulator."""
    from batchyard.cli.batches import follow, validate_locally
    from batchyard.cli.local import LocalBackend, open_services
    from batchyard.cli.processes import settings_env, start_worker_process, stop_process
    from batchyard.db.migrate import upgrade
    from batchyard.emulator import EmulatorConfig, EmulatorServer

    workdir = data_dir or Path(tempfile.mkdtemp(prefix="batchyard-demo-"))
    source = file or example_path()
    endpoint = validate_locally(source)
    emu_cfg = EmulatorConfig(validation_delay=0.3, finalize_delay=0.3, cancel_grace=0.1,
                             request_latency=0.01)
    with EmulatorServer(emu_cfg) as emulator:
        cfg = demo_settings(workdir, f"{emulator.base_url}/v1")
        typer.echo(f"emulator on {emulator.base_url}; data in {workdir}")
        workdir.mkdir(parents=True, exist_ok=True)
        upgrade(cfg.effective_database_url)
        backend = LocalBackend(open_services(cfg))
        proc = start_worker_process(settings_env(cfg), concurrency=4, beat=True,
                                    log=workdir / "worker.log")
        try:
            batch = backend.create_batch(source, endpoint=endpoint, model=None, provider=None)
            typer.echo(f"batch {batch.id}: {source.name} submitted; worker pid {proc.pid}")
            final = follow(backend, batch.id, timeout=300)
            _summary(backend.svc, final, emulator.emulator.stats(), rows, cfg)
        finally:
            stop_process(proc)
            backend.close()


def demo_settings(workdir: Path, api_base: str) -> Settings:
    """Embedded settings with demo-friendly speeds (seconds, not hours)."""
    from pydantic import SecretStr

    from batchyard.config import PipelineSettings, Settings

    pipeline = PipelineSettings(part_max_requests=25, poll_min_seconds=0.3,
                                poll_max_seconds=1.0, tick_seconds=0.3, stale_seconds=10.0,
                                quota_retry_seconds=2.0, queue="demo")
    return Settings(data_dir=workdir, database_url=None, broker_url=None,
                    openai_api_key=SecretStr("sk-demo"), openai_api_base=api_base,
                    pipeline=pipeline)


def _summary(svc: Services, batch: BatchRecord, stats: dict[str, Any], rows: int,
             cfg: Settings) -> None:
    from rich.console import Console
    from rich.syntax import Syntax
    from rich.table import Table

    from batchyard.services.reports import preview_results

    console = Console()
    counts = batch.request_counts
    console.print(f"\n[bold]{batch.id}[/] ended [bold]{batch.status}[/]: {counts.total} "
                  f"requests, {counts.completed} succeeded, {counts.failed} failed; "
                  f"{stats['batches_created']} provider batches, {stats['files_uploaded']} "
                  "uploads (retries included)")
    db_file = cfg.data_dir.resolve() / "batchyard.db"
    console.print(f"\nEvery result is a row in SQL. See them with:\n  sqlite3 {db_file} \"...\"\n")
    console.print(Syntax(SHOW_SQL.format(batch_id=batch.id, limit=rows), "sql"))
    table = Table("line_no", "custom_id", "status_code", "attempt", "answer", "error_code")
    for r in preview_results(svc, batch.id, owner=None, limit=rows):
        table.add_row(str(r.line), r.custom_id, str(r.status_code or ""), str(r.attempt),
                      r.answer, r.error_code or "")
    console.print(table)
    console.print("\nAll results as JSONL or CSV: "
                  f"BATCHYARD_DATA_DIR={cfg.data_dir} batchyard results {batch.id} "
                  "-o results.csv")
