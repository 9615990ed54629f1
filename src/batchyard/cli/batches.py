"""``batchyard run / status / results / cancel``: submit, follow and read batches, on this
machine's data dir or, with ``--url``, on a running server."""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from batchyard.cli.backend import open_backend
from batchyard.cli.common import EXIT_INTERRUPTED, ApiKeyOption, UrlOption, fail

if TYPE_CHECKING:
    from rich.console import Console

    from batchyard.cli.backend import Backend
    from batchyard.domain.records import BatchRecord

EXIT_CODES_HELP = ("Exit codes with --wait: 0 every request succeeded; 3 completed with failed "
                   "requests; 4 the batch ended failed, expired or cancelled; 1 an error; 130 "
                   "interrupted (the batch keeps running).")


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.command(epilog=EXIT_CODES_HELP)(run)
    app.command(epilog=EXIT_CODES_HELP)(status)
    app.command()(results)
    app.command()(cancel)


def _note(text: str) -> None:
    typer.secho(text, err=True, dim=True)


def validate_locally(path: Path) -> str:
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
        fail(f"{path}: {exc.message} [{exc.code}]")
    return url if url.startswith("/v1/") else "/v1" + url


def run(file: Annotated[Path, typer.Argument(exists=True, dir_okay=False,
                                             help="Input JSONL.")],
        model: Annotated[str | None, typer.Option(help="Model group to route to.")] = None,
        provider: Annotated[str | None, typer.Option(help="Force openai or azure.")] = None,
        wait: Annotated[bool, typer.Option(
            "--wait", help="Follow progress until the batch ends; the exit code says how "
                           "it ended.")] = False,
        url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Submit a JSONL of requests as a batch (workers must be running: `batchyard up`)."""
    endpoint = validate_locally(file)
    with open_backend(url, api_key) as backend:
        batch = backend.create_batch(file, endpoint=endpoint, model=model, provider=provider)
        typer.echo(f"batch {batch.id} created ({file.name})")
        _note(f"using {backend.where}")
        if not wait:
            typer.echo(f"check on it: batchyard status {batch.id}")
            return
        code = _follow_and_report(backend, batch.id)
    raise typer.Exit(code)


def _follow_and_report(backend: Backend, batch_id: str) -> int:
    from rich.console import Console

    from batchyard.cli.render import print_outcome

    final = follow(backend, batch_id)
    return print_outcome(Console(), final, backend.failures(final.id), backend.parts(final.id))


def follow(backend: Backend, batch_id: str, *, timeout: float | None = None,
           interval: float = 0.5) -> BatchRecord:
    """A moving bar (done / total, failed, rate-based ETA) until the batch ends."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from batchyard.cli.render import cost_text
    from batchyard.domain.lifecycle import TERMINAL_BATCH_STATUSES

    columns = (TextColumn("[bold]{task.fields[status]:<11}"), BarColumn(),
               TextColumn("{task.completed:>6.0f}/{task.fields[shown_total]:<6} done"),
               TextColumn("[red]{task.fields[failed]} failed"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[cost]}"))
    deadline = None if timeout is None else time.monotonic() + timeout
    batch = backend.get_batch(batch_id)
    try:
        # The ETA is rich's: remaining / the rate of the last 30 s of progress updates.
        with Progress(*columns, speed_estimate_period=30.0) as bar:
            task = bar.add_task(batch_id, total=None, status=batch.status, failed=0,
                                shown_total="?", cost="")
            while True:
                c = batch.request_counts
                bar.update(task, total=c.total or None, completed=c.completed + c.failed,
                           status=batch.status, failed=c.failed, shown_total=c.total or "?",
                           cost=cost_text(batch))
                if batch.status in TERMINAL_BATCH_STATUSES:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"batch {batch_id} still {batch.status}")
                time.sleep(interval)
                batch = backend.get_batch(batch_id)
    except KeyboardInterrupt:
        typer.echo(f"\nstill running in the background; check on it with: "
                   f"batchyard status {batch_id}")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    return batch


def status(batch: Annotated[str | None, typer.Argument(
               help="A batch id (default: the recent batches).", show_default=False)] = None,
           as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
           wait: Annotated[bool, typer.Option(
               "--wait", help="With BATCH: follow it until it ends (exit codes as run).")
           ] = False,
           limit: Annotated[int, typer.Option(help="How many recent batches.")] = 20,
           url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Show recent batches, or one batch with its progress, parts and failure reasons."""
    from batchyard.cli import render

    with open_backend(url, api_key) as backend:
        if batch is None:
            records = backend.list_batches(limit)
            if as_json:
                typer.echo(_dumps({"object": "list",
                                   "data": [render.batch_json(r) for r in records]}))
                return
            _note(f"using {backend.where}")
            _console().print(render.batches_table(records))
            return
        if wait:
            raise typer.Exit(_follow_and_report(backend, batch))
        record = backend.get_batch(batch)
        parts, failures = backend.parts(batch), backend.failures(batch)
    if as_json:
        typer.echo(_dumps(render.batch_json(record, parts, failures)))
        return
    console = _console()
    console.print(render.batches_table([record]))
    console.print(render.progress_line(record), highlight=False)
    if parts:
        console.print(render.parts_table(parts))
    render.print_reasons(console, record, failures, parts)


def _console() -> Console:
    from rich.console import Console  # not for --json: rich is a large import

    return Console()


def _dumps(data: Any) -> str:
    import orjson

    return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode()


def results(batch: Annotated[str, typer.Argument(help="The batch id.")],
            output: Annotated[Path | None, typer.Option(
                "-o", "--output", help="out.jsonl or out.csv (default: JSONL on stdout).",
                show_default=False)] = None,
            failed_only: Annotated[bool, typer.Option(
                "--failed-only", help="Only the requests that failed.")] = False,
            url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Write a batch's results (one line per request, input order) as JSONL or CSV.

    Each carries its cost: ``batchyard_cost`` in JSONL, ``cost_usd`` / ``price_source`` in CSV.
    """
    with open_backend(url, api_key) as backend:
        backend.get_batch(batch)  # an unknown batch is an error, not an empty file
        costs = {c["custom_id"]: c for c in backend.request_costs(batch)["data"]}
        lines = backend.result_lines(batch, failed_only=failed_only)
        if output is not None and output.suffix.lower() == ".csv":
            with output.open("w", newline="", encoding="utf-8") as fh:
                n = write_csv(lines, fh, costs)
        elif output is not None:
            with output.open("wb") as out:
                n = write_jsonl(lines, out, costs)
        else:
            n = write_jsonl(lines, sys.stdout.buffer, costs)
            sys.stdout.flush()
    if output is not None:
        typer.echo(f"{n} results written to {output}")


def write_jsonl(lines: Any, out: BinaryIO, costs: dict[str, Any] | None = None) -> int:
    """Copy result lines, each with its ``batchyard_cost`` when known; returns how many."""
    import orjson

    n = 0
    for line in lines:
        if costs:
            data = orjson.loads(line)
            cost = costs.get(data.get("custom_id"))
            if cost is not None:
                data["batchyard_cost"] = {k: v for k, v in cost.items() if k != "custom_id"}
                line = orjson.dumps(data) + b"\n"
        out.write(line)
        n += 1
    return n


CSV_COLUMNS = ["custom_id", "ok", "status_code", "content", "error_code", "error_message",
               "input_tokens", "output_tokens", "cost_usd", "price_source"]


def csv_row(line: bytes, costs: dict[str, Any] | None = None) -> list[Any]:
    """One CSV row from an OpenAI-shaped result line (and its cost, when known)."""
    import orjson

    data = orjson.loads(line)
    cost = (costs or {}).get(data.get("custom_id")) or {}
    response = data.get("response") or {}
    body = response.get("body") or {}
    error = data.get("error") or body.get("error") or {}
    status_code = response.get("status_code")
    ok = status_code is not None and 200 <= status_code < 300
    content = ""
    if ok:
        choices = body.get("choices") or [{}]
        content = ((choices[0].get("message") or {}).get("content")) or ""
    usage = body.get("usage") or {}
    return [data.get("custom_id", ""), ok, status_code or "", content, error.get("code") or "",
            error.get("message") or "", usage.get("prompt_tokens", usage.get("input_tokens", 0)),
            usage.get("completion_tokens", usage.get("output_tokens", 0)),
            cost.get("cost") or "", cost.get("price_source") or cost.get("unpriced_reason") or ""]


def write_csv(lines: Any, out: Any, costs: dict[str, Any] | None = None) -> int:
    """One CSV row per request: id, outcome, the answer text (chat), error, tokens, cost."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    n = 0
    for line in lines:
        writer.writerow(csv_row(line, costs))
        n += 1
    return n


def cancel(batch: Annotated[str, typer.Argument(help="The batch id.")],
           url: UrlOption = None, api_key: ApiKeyOption = None) -> None:
    """Cancel a batch (results already in SQL are kept)."""
    with open_backend(url, api_key) as backend:
        rec = backend.cancel_batch(batch)
    typer.echo(f"batch {rec.id}: {rec.status}")
