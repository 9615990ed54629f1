"""``batchyard run / status / results / cancel / demo``: submit and follow batches."""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from batchyard.cli_pipeline import (
    TERMINAL,
    _services,
)

if TYPE_CHECKING:
    from batchyard.domain.records import BatchRecord
    from batchyard.services.container import Services


def _validate_locally(path: Path) -> str:
    """Validate the JSONL before anything is stored; returns its endpoint (url)."""
    from batchyard.domain.jsonl import iter_request_lines
    from batchyard.errors import JsonlError

    url = "/v1/chat/completions"
    try:
        with path.open("rb") as fh:
            for i, line in enumerate(iter_request_lines(iter(lambda: fh.read(1 << 20), b""))):
                if i == 0:
                    url = line.url
    except JsonlError as exc:
        typer.secho(f"{path}: {exc.message} [{exc.code}]", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None
    return url if url.startswith("/v1/") else "/v1" + url


def submit_file(svc: Services, path: Path, *, model: str | None = None,
                provider: str | None = None) -> BatchRecord:
    """Store a local JSONL and create its batch (the workers take it from there)."""
    from batchyard.services import batches, files

    endpoint = _validate_locally(path)
    with path.open("rb") as fh:
        record = files.create_file(svc, owner=None, filename=path.name, purpose="batch",
                                   stream=fh)
    return batches.create_batch(svc, owner=None, input_file_id=record.id, endpoint=endpoint,
                                model=model, provider=provider)


def run(file: Path = typer.Argument(..., exists=True, dir_okay=False, help="Input JSONL."),
        model: str | None = typer.Option(None, help="Model group to route to."),
        provider: str | None = typer.Option(None, help="Force openai or azure."),
        wait: bool = typer.Option(False, help="Follow progress until the batch ends.")) -> None:
    """Submit a JSONL of requests as a batch (workers must be running: `batchyard up`)."""
    svc = _services()
    try:
        batch = submit_file(svc, file, model=model, provider=provider)
        typer.echo(f"batch {batch.id} created ({file.name})")
        if wait:
            follow(svc, batch.id)
        else:
            typer.echo(f"check on it: batchyard status {batch.id}")
    finally:
        svc.close()


def follow(svc: Services, batch_id: str, *, timeout: float | None = None) -> BatchRecord:
    """A rich progress bar (completed / failed / total, ETA) until the batch ends."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from batchyard.services import batches

    columns = (TextColumn("[bold]{task.fields[status]:<11}"), BarColumn(),
               TextColumn("{task.completed:>6.0f}/{task.total:<6.0f} done"),
               TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    deadline = None if timeout is None else time.monotonic() + timeout
    batch = batches.get_batch(svc, batch_id, owner=None)
    try:
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task(batch_id, total=1, status=batch.status, failed=0)
            while batch.status not in TERMINAL:
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch_id} still {batch.status}")
                time.sleep(0.25)
                batch = batches.get_batch(svc, batch_id, owner=None)
                done, failed, total = _progress(svc, batch_id)
                bar.update(task, total=max(total, 1), completed=done, status=batch.status,
                           failed=failed)
            counts = batch.request_counts
            bar.update(task, total=max(counts.total, 1),
                       completed=counts.completed + counts.failed,
                       status=batch.status, failed=counts.failed)
    except KeyboardInterrupt:
        typer.echo(f"\nstill running in the background; check on it with: "
                   f"batchyard status {batch_id}")
        raise typer.Exit(130) from None
    return batch


def _progress(svc: Services, batch_id: str) -> tuple[int, int, int]:
    """(done, failed, total) straight from SQL, while the batch runs."""
    from sqlalchemy import text

    with svc.engine.connect() as conn:
        done, failed = conn.execute(text(
            "SELECT count(*), coalesce(sum(CASE WHEN ok THEN 0 ELSE 1 END), 0) "
            "FROM results WHERE batch_id = :b"), {"b": batch_id}).one()
        total = conn.scalar(text("SELECT total FROM batches WHERE id = :b"), {"b": batch_id})
    return int(done), int(failed), int(total or 0)


def status(batch: str | None = typer.Argument(None, help="A batch id (default: recent).")
           ) -> None:
    """Show recent batches, or one batch with its parts."""
    from rich.console import Console
    from rich.table import Table

    from batchyard.services import batches

    svc = _services()
    try:
        records = ([_existing_batch(svc, batch)] if batch
                   else batches.list_batches(svc, owner=None, limit=20).data)
        table = Table()
        # Ids are what users copy into the next command: never wrap or cut them.
        table.add_column("batch", no_wrap=True,
                         min_width=max((len(r.id) for r in records), default=5))
        table.add_column("status", no_wrap=True, min_width=len("in_progress"))
        for name in ("total", "completed", "failed", "created"):
            table.add_column(name)
        for rec in records:
            c = rec.request_counts
            table.add_row(rec.id, rec.status, str(c.total), str(c.completed), str(c.failed),
                          time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(rec.created_at)))
        Console().print(table)
        if batch:
            Console().print(_parts_table(svc, batch))
    finally:
        svc.close()


def _parts_table(svc: Services, batch_id: str) -> Any:
    from rich.table import Table
    from sqlalchemy import text

    with svc.engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, attempt, status, provider_status, request_count, deployment "
            "FROM parts WHERE batch_id = :b ORDER BY seq"), {"b": batch_id}).all()
    table = Table()
    table.add_column("part", no_wrap=True, min_width=max((len(r[0]) for r in rows), default=4))
    table.add_column("attempt")
    table.add_column("status", no_wrap=True, min_width=len("submitting"))
    for name in ("provider status", "requests", "deployment"):
        table.add_column(name)
    for row in rows:
        table.add_row(*(str(v) if v is not None else "" for v in row))
    return table


def _existing_batch(svc: Services, batch_id: str) -> Any:
    """The batch, or a clear error and exit status 1 when there is no such batch."""
    from batchyard.errors import NotFoundError
    from batchyard.services import batches

    try:
        return batches.get_batch(svc, batch_id, owner=None)
    except NotFoundError as exc:
        typer.secho(f"error: {exc.message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc


def results(batch: str = typer.Argument(..., help="The batch id."),
            output: Path | None = typer.Option(None, "-o", "--output",
                                               help="out.jsonl or out.csv (default stdout)")
            ) -> None:
    """Write a batch's results (one line per request, input order) as JSONL or CSV."""
    svc = _services()
    try:
        _existing_batch(svc, batch)
        if output is not None and output.suffix.lower() == ".csv":
            with output.open("w", newline="", encoding="utf-8") as fh:
                n = write_csv(svc, batch, fh)
        else:
            with (output.open("wb") if output else _stdout()) as fh:
                n = write_jsonl(svc, batch, fh)
        if output is not None:
            typer.echo(f"{n} results written to {output}")
    finally:
        svc.close()


def _stdout() -> Any:
    return open(sys.stdout.fileno(), "wb", closefd=False)


def _rows(svc: Services, batch_id: str) -> Iterator[Any]:
    from sqlalchemy.orm import Session

    from batchyard.db.engine import readonly_engine
    from batchyard.db.results import iter_batch_results

    with Session(readonly_engine(svc.engine)) as session:
        yield from iter_batch_results(session, batch_id)


def write_jsonl(svc: Services, batch_id: str, out: Any) -> int:
    """OpenAI-shaped result lines (successes and errors merged, input order)."""
    from batchyard.services.render import render_row

    n = 0
    for row in _rows(svc, batch_id):
        out.write(render_row(row))
        n += 1
    return n


def write_csv(svc: Services, batch_id: str, out: io.TextIOBase | Any) -> int:
    """One CSV row per request: id, outcome, the answer text (chat) and tokens."""
    import orjson

    writer = csv.writer(out)
    writer.writerow(["custom_id", "line", "ok", "status_code", "content", "error_code",
                     "error_message", "input_tokens", "output_tokens"])
    n = 0
    for row in _rows(svc, batch_id):
        content = ""
        if row.ok and row.response_body:
            body = orjson.loads(row.response_body)
            choices = body.get("choices") or [{}]
            content = ((choices[0].get("message") or {}).get("content")) or ""
        writer.writerow([row.custom_id, row.line_no, row.ok, row.status_code or "", content,
                         row.error_code or "", row.error_message or "", row.input_tokens,
                         row.output_tokens])
        n += 1
    return n


def cancel(batch: str = typer.Argument(..., help="The batch id.")) -> None:
    """Cancel a batch (results already in SQL are kept)."""
    from batchyard.services import batches

    svc = _services()
    try:
        rec = batches.cancel_batch(svc, batch, owner=None)
        typer.echo(f"batch {rec.id}: {rec.status}")
    finally:
        svc.close()


from batchyard.cli_demo import demo  # noqa: E402,F401  (re-exported for register())
